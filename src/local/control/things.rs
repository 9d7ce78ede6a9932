//! Things, thing groups and membership (reference §4.4).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{flag, Body, P, Q};
use super::page::page;
use super::{shapes, ControlContext};
use crate::local::service::task::Command;
use crate::local::service::{NewThing, NewThingGroup};
use crate::local::store::StringMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributePayload {
    #[serde(default)]
    attributes: StringMap,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingBody {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
}

pub async fn create_thing(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
    Body(body): Body<CreateThingBody>,
) -> ApiResult<Json<Value>> {
    let new = NewThing {
        name,
        thing_type: body.thing_type_name,
        attributes: body.attribute_payload.unwrap_or_default().attributes,
    };
    let t = ctx
        .service
        .request(|r| Command::CreateThing(new, r))
        .await?;
    Ok(Json(json!({
        "thingName": t.name,
        "thingArn": ctx.account.thing_arn(&t.name),
        "thingId": t.thing_id,
    })))
}

pub async fn describe_thing(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    let t = ctx
        .service
        .request(|r| Command::DescribeThing(name, r))
        .await?;
    Ok(Json(shapes::thing(&ctx.account, &t)))
}

pub async fn delete_thing(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    ctx.service
        .request(|r| Command::DeleteThing(name, r))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListThingsQuery {
    next_token: Option<String>,
    max_results: Option<usize>,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    thing_type_name: Option<String>,
    use_prefix_attribute_value: Option<String>,
}

pub async fn list_things(
    State(ctx): State<ControlContext>,
    Q(q): Q<ListThingsQuery>,
) -> ApiResult<Json<Value>> {
    let prefix = flag(q.use_prefix_attribute_value.as_deref())?;
    let things = ctx.service.request(Command::ListThings).await?;
    let matching: Vec<_> = things
        .into_iter()
        .filter(|t| {
            q.thing_type_name
                .as_ref()
                .is_none_or(|ty| t.thing_type.as_ref() == Some(ty))
        })
        .filter(|t| match (&q.attribute_name, &q.attribute_value) {
            (Some(n), Some(v)) => {
                t.attributes
                    .get(n)
                    .is_some_and(|a| if prefix { a.starts_with(v) } else { a == v })
            }
            (Some(n), None) => t.attributes.contains_key(n),
            _ => true,
        })
        .collect();
    let (items, next) = page(matching, q.max_results, q.next_token.as_deref())?;
    let things: Vec<_> = items
        .iter()
        .map(|t| shapes::thing_summary(&ctx.account, t))
        .collect();
    Ok(Json(shapes::compact(
        json!({"things": things, "nextToken": next}),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupProperties {
    thing_group_description: Option<String>,
    attribute_payload: Option<AttributePayload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingGroupBody {
    parent_group_name: Option<String>,
    thing_group_properties: Option<GroupProperties>,
}

pub async fn create_thing_group(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
    Body(body): Body<CreateThingGroupBody>,
) -> ApiResult<Json<Value>> {
    let props = body.thing_group_properties.unwrap_or_default();
    let new = NewThingGroup {
        name,
        parent: body.parent_group_name,
        description: props.thing_group_description,
        attributes: props.attribute_payload.unwrap_or_default().attributes,
    };
    let g = ctx
        .service
        .request(|r| Command::CreateThingGroup(new, r))
        .await?;
    Ok(Json(json!({
        "thingGroupName": g.name,
        "thingGroupArn": ctx.account.group_arn(&g.name),
        "thingGroupId": g.group_id,
    })))
}

pub async fn describe_thing_group(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    let (g, ancestors) = ctx
        .service
        .request(|r| Command::DescribeThingGroup(name, r))
        .await?;
    Ok(Json(shapes::thing_group(&ctx.account, &g, &ancestors)))
}

pub async fn delete_thing_group(
    State(ctx): State<ControlContext>,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    ctx.service
        .request(|r| Command::DeleteThingGroup(name, r))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListThingGroupsQuery {
    next_token: Option<String>,
    max_results: Option<usize>,
    parent_group: Option<String>,
    name_prefix_filter: Option<String>,
    recursive: Option<String>,
}

/// ListThingGroups: every group, or the children of `parentGroup` (all descendants with
/// `recursive=true`), optionally filtered by name prefix.
pub async fn list_thing_groups(
    State(ctx): State<ControlContext>,
    Q(q): Q<ListThingGroupsQuery>,
) -> ApiResult<Json<Value>> {
    let recursive = flag(q.recursive.as_deref())?;
    let groups = ctx.service.request(Command::ListThingGroups).await?;
    let parent_of: std::collections::BTreeMap<String, Option<String>> = groups
        .iter()
        .map(|g| (g.name.clone(), g.parent.clone()))
        .collect();
    let under = |name: &str, parent: &str| -> bool {
        let mut cur = parent_of.get(name).cloned().flatten();
        // Nesting is acyclic (a parent must exist before its child); the bound is a guard.
        for _ in 0..parent_of.len() {
            match cur {
                Some(p) if p == parent => return true,
                Some(p) if recursive => cur = parent_of.get(&p).cloned().flatten(),
                _ => return false,
            }
        }
        false
    };
    let names: Vec<String> = groups
        .iter()
        .map(|g| g.name.clone())
        .filter(|n| q.parent_group.as_deref().is_none_or(|p| under(n, p)))
        .filter(|n| {
            q.name_prefix_filter
                .as_deref()
                .is_none_or(|p| n.starts_with(p))
        })
        .collect();
    let (items, next) = page(names, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|n| shapes::group_ref(&ctx.account, n))
        .collect();
    Ok(Json(shapes::compact(
        json!({"thingGroups": list, "nextToken": next}),
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipBody {
    thing_group_name: Option<String>,
    thing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
}

/// The name in `name`, else the last path segment of `arn` after `kind/`.
fn name_or_arn(
    what: &str,
    kind: &str,
    name: Option<String>,
    arn: Option<String>,
) -> ApiResult<String> {
    if let Some(n) = name {
        return Ok(n);
    }
    let arn =
        arn.ok_or_else(|| ApiError::invalid(format!("{what}Name or {what}Arn is required")))?;
    arn.rsplit_once(&format!(":{kind}/"))
        .map(|(_, n)| n.to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{arn:?} is not a {kind} ARN")))
}

fn membership(b: MembershipBody) -> ApiResult<(String, String)> {
    let group = name_or_arn(
        "thingGroup",
        "thinggroup",
        b.thing_group_name,
        b.thing_group_arn,
    )?;
    let thing = name_or_arn("thing", "thing", b.thing_name, b.thing_arn)?;
    Ok((group, thing))
}

pub async fn add_thing_to_thing_group(
    State(ctx): State<ControlContext>,
    Body(body): Body<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let (group, thing) = membership(body)?;
    ctx.service
        .request(|reply| Command::AddThingToThingGroup {
            group,
            thing,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

pub async fn remove_thing_from_thing_group(
    State(ctx): State<ControlContext>,
    Body(body): Body<MembershipBody>,
) -> ApiResult<Json<Value>> {
    let (group, thing) = membership(body)?;
    ctx.service
        .request(|reply| Command::RemoveThingFromThingGroup {
            group,
            thing,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    next_token: Option<String>,
    max_results: Option<usize>,
    recursive: Option<String>,
}

pub async fn list_things_in_thing_group(
    State(ctx): State<ControlContext>,
    P(group): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Value>> {
    let recursive = flag(q.recursive.as_deref())?;
    let things = ctx
        .service
        .request(|reply| Command::ListThingsInThingGroup {
            group,
            recursive,
            reply,
        })
        .await?;
    let (items, next) = page(things, q.max_results, q.next_token.as_deref())?;
    Ok(Json(shapes::compact(
        json!({"things": items, "nextToken": next}),
    )))
}

pub async fn list_thing_groups_for_thing(
    State(ctx): State<ControlContext>,
    P(thing): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Value>> {
    let groups = ctx
        .service
        .request(|r| Command::ListThingGroupsForThing(thing, r))
        .await?;
    let (items, next) = page(groups, q.max_results, q.next_token.as_deref())?;
    let list: Vec<_> = items
        .iter()
        .map(|n| shapes::group_ref(&ctx.account, n))
        .collect();
    Ok(Json(shapes::compact(
        json!({"thingGroups": list, "nextToken": next}),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_accepts_names_or_arns() {
        let b = MembershipBody {
            thing_group_arn: Some("arn:aws:iot:us-east-1:123456789012:thinggroup/g1".into()),
            thing_name: Some("t1".into()),
            ..Default::default()
        };
        assert_eq!(membership(b).unwrap(), ("g1".into(), "t1".into()));
        let b = MembershipBody {
            thing_group_name: Some("g".into()),
            thing_arn: Some("arn:aws:iot:us-east-1:1:thinggroup/x".into()),
            ..Default::default()
        };
        assert!(membership(b).is_err());
        assert!(membership(MembershipBody::default()).is_err());
    }
}
