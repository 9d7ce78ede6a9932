//! Certificates and principals: CreateKeysAndCertificate, DescribeCertificate,
//! UpdateCertificate, AttachThingPrincipal, DetachThingPrincipal, ListThingPrincipals and
//! ListPrincipalThings, on AWS's routes and shapes.
//!
//! As on AWS, CreateKeysAndCertificate issues a certificate bound to no thing (status
//! ACTIVE only with `setAsActive=true`); AttachThingPrincipal binds it, and the embedded
//! broker then lets it connect with that thing's name as client id. The query parameter
//! `thingName` (a local extension, used by `iotjobs-local create-thing NAME --out DIR`)
//! issues a certificate whose CN is the thing name, ACTIVE and attached at once.
//! Policies (AttachPolicy) do not exist locally: the broker's fixed policy applies.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{flag, P, Q};
use super::page::page;
use super::shapes;
use super::ControlContext;
use crate::local::clock::Timestamp;
use crate::local::service::task::Command;
use crate::local::store::{CertificateRecord, CertificateStatus};

/// The header AttachThingPrincipal & co. carry the principal in.
const PRINCIPAL_HEADER: &str = "x-amzn-principal";

/// Validity of every certificate of the local CA (see `pki::set_validity`): 2020-01-01 to
/// 2049-12-31, like AWS-issued certificates.
const NOT_BEFORE_SECS: i64 = 1_577_836_800;
const NOT_AFTER_SECS: i64 = 2_524_521_600;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertQuery {
    set_as_active: Option<String>,
    thing_name: Option<String>,
}

pub async fn create_keys_and_certificate(
    State(ctx): State<ControlContext>,
    Q(q): Q<CertQuery>,
) -> ApiResult<Json<Value>> {
    let set_as_active = flag(q.set_as_active.as_deref())?;
    let pki = ctx
        .pki
        .clone()
        .ok_or_else(|| ApiError::invalid("this service has no certificate authority"))?;
    let thing = q.thing_name;
    if let Some(name) = thing.clone() {
        // Checked before issuing, so an unknown thing costs no key generation.
        ctx.service
            .request(|r| Command::DescribeThing(name, r))
            .await?;
    }
    let cn = thing.clone();
    let issued = tokio::task::spawn_blocking(move || match cn {
        Some(t) => pki.issue_device_cert(&t),
        None => pki.issue_unbound_device_cert(),
    })
    .await
    .map_err(|e| ApiError::internal(format!("certificate task failed: {e}")))?
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    // The thingName path keeps its old meaning: a certificate usable at once.
    let active = set_as_active || thing.is_some();
    let issued = Box::new(issued);
    let record = ctx
        .service
        .request(|reply| Command::RecordCertificate {
            issued: issued.clone(),
            active,
            thing,
            reply,
        })
        .await?;
    Ok(Json(json!({
        "certificateArn": record.certificate_arn,
        "certificateId": record.certificate_id,
        "certificatePem": issued.certificate_pem,
        "keyPair": {
            "PublicKey": issued.key_pair.public_key,
            "PrivateKey": issued.key_pair.private_key,
        },
    })))
}

fn certificate_description(ctx: &ControlContext, c: &CertificateRecord) -> Value {
    json!({
        "certificateDescription": {
            "certificateArn": c.certificate_arn,
            "certificateId": c.certificate_id,
            "status": status_name(c.status),
            "certificatePem": c.pem,
            "ownedBy": ctx.account.account_id,
            "creationDate": c.created_at.secs_f64(),
            "lastModifiedDate": c.last_modified_at.secs_f64(),
            "customerVersion": 1,
            "validity": {
                "notBefore": Timestamp::from_secs(NOT_BEFORE_SECS).secs_f64(),
                "notAfter": Timestamp::from_secs(NOT_AFTER_SECS).secs_f64(),
            },
            "certificateMode": "DEFAULT",
        }
    })
}

fn status_name(s: CertificateStatus) -> &'static str {
    match s {
        CertificateStatus::Active => "ACTIVE",
        CertificateStatus::Inactive => "INACTIVE",
    }
}

pub async fn describe_certificate(
    State(ctx): State<ControlContext>,
    P(id): P<String>,
) -> ApiResult<Json<Value>> {
    let c = ctx
        .service
        .request(|r| Command::DescribeCertificate(id, r))
        .await?;
    Ok(Json(certificate_description(&ctx, &c)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateQuery {
    new_status: Option<String>,
}

pub async fn update_certificate(
    State(ctx): State<ControlContext>,
    P(certificate_id): P<String>,
    Q(q): Q<UpdateQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.new_status.as_deref() {
        Some("ACTIVE") => CertificateStatus::Active,
        Some("INACTIVE") => CertificateStatus::Inactive,
        Some(s @ ("REVOKED" | "PENDING_TRANSFER" | "REGISTER_INACTIVE" | "PENDING_ACTIVATION")) => {
            return Err(ApiError::invalid(format!(
                "newStatus {s} is not supported by iotjobs-local (ACTIVE or INACTIVE)"
            )))
        }
        Some(s) => return Err(ApiError::invalid(format!("invalid newStatus {s:?}"))),
        None => return Err(ApiError::invalid("newStatus is required")),
    };
    ctx.service
        .request(|reply| Command::UpdateCertificate {
            certificate_id,
            status,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

fn principal(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get(PRINCIPAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(format!("the {PRINCIPAL_HEADER} header is required")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachQuery {
    thing_principal_type: Option<String>,
}

pub async fn attach_thing_principal(
    State(ctx): State<ControlContext>,
    P(thing): P<String>,
    Q(q): Q<AttachQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = principal(&headers)?;
    match q.thing_principal_type.as_deref() {
        None | Some("NON_EXCLUSIVE_THING") => {}
        Some("EXCLUSIVE_THING") => {
            return Err(ApiError::invalid(
                "thingPrincipalType EXCLUSIVE_THING is not supported by iotjobs-local",
            ))
        }
        Some(t) => {
            return Err(ApiError::invalid(format!(
                "invalid thingPrincipalType {t:?}"
            )))
        }
    }
    ctx.service
        .request(|reply| Command::AttachThingPrincipal {
            thing,
            principal,
            reply,
        })
        .await?;
    Ok(Json(json!({})))
}

pub async fn detach_thing_principal(
    State(ctx): State<ControlContext>,
    P(thing): P<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = principal(&headers)?;
    ctx.service
        .request(|reply| Command::DetachThingPrincipal {
            thing,
            principal,
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
}

pub async fn list_thing_principals(
    State(ctx): State<ControlContext>,
    P(thing): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Value>> {
    let arns = ctx
        .service
        .request(|r| Command::ListThingPrincipals(thing, r))
        .await?;
    let (items, next) = page(arns, q.max_results, q.next_token.as_deref())?;
    Ok(Json(shapes::compact(
        json!({"principals": items, "nextToken": next}),
    )))
}

pub async fn list_principal_things(
    State(ctx): State<ControlContext>,
    Q(q): Q<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = principal(&headers)?;
    let things = ctx
        .service
        .request(|r| Command::ListPrincipalThings(principal, r))
        .await?;
    let (items, next) = page(things, q.max_results, q.next_token.as_deref())?;
    Ok(Json(shapes::compact(
        json!({"things": items, "nextToken": next}),
    )))
}
