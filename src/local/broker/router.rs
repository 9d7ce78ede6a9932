//! The `$next` fix: rmqtt 0.24 rejects any topic level after the first that starts with `$`
//! (`Level::Metadata` is only valid at position 0), so AWS Jobs topics such as
//! `$aws/things/T/jobs/$next/get` fail to subscribe (SUBACK failure) and publishes to them
//! are silently dropped. The MQTT spec allows them. [`EscapingRouter`] wraps rmqtt's
//! `DefaultRouter` and escapes such levels before they reach the topic trie; delivery still
//! uses the publish's own topic, so clients never see the escaped form.
//!
//! The ACL (`acl.rs`) refuses client topics that contain [`ESCAPE`], so no client topic can
//! alias an escaped one. Retained messages and shared subscriptions parse topics on their
//! own and would need the same treatment; the embedded broker enables neither.
//!
//! The router also gives the service identity's sessions MQTT 5's "No Local": a message a
//! service session publishes is not delivered back to that same session. The service
//! subscribes to `$aws/things/+/jobs/#` (it must see every request, and unknown topics to
//! answer `InvalidTopic`), which also matches every reply and notification it publishes;
//! without this, each of those came back to it (three of every four messages it received
//! during a fleet rollout), costing TLS, a PUBACK and a slot in its inbound queue. Its
//! MQTT 3.1.1 client cannot ask for No Local itself. Other service-identity sessions (an
//! observer) and devices, which MQTT 3.1.1 lets see their own publishes, are unaffected.

use std::borrow::Cow;

use async_trait::async_trait;
use rmqtt::router::{DefaultRouter, Router};
use rmqtt::types::{
    AllRelationsMap, HashMap, Id, NodeId, Route, SubRelationsMap, SubsSearchParams,
    SubsSearchResult, SubscriptionOptions, TopicName,
};
use rmqtt::utils::Counter;
use rmqtt::Result;

use super::acl::Identity;

/// Replaces the leading `$` of levels after the first (U+E000, a private-use character).
pub const ESCAPE: char = '\u{E000}';

/// Escapes a leading `$` in every level after the first; borrows when there is none.
pub fn escape(topic: &str) -> Cow<'_, str> {
    if !topic.contains("/$") {
        return Cow::Borrowed(topic);
    }
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('/');
            if let Some(rest) = level.strip_prefix('$') {
                out.push(ESCAPE);
                out.push_str(rest);
                continue;
            }
        }
        out.push_str(level);
    }
    Cow::Owned(out)
}

/// rmqtt's default router with [`escape`] applied to every topic and filter it is given.
pub struct EscapingRouter(pub DefaultRouter);

#[async_trait]
impl Router for EscapingRouter {
    async fn add(&self, topic_filter: &str, id: Id, opts: SubscriptionOptions) -> Result<()> {
        self.0.add(&escape(topic_filter), id, opts).await
    }

    async fn remove(&self, topic_filter: &str, id: Id) -> Result<bool> {
        self.0.remove(&escape(topic_filter), id).await
    }

    async fn matches(&self, id: Id, topic: &TopicName) -> Result<SubRelationsMap> {
        let no_local = Identity::from_client_id(&id.client_id) == Some(Identity::Service);
        let publisher = id.client_id.clone();
        let mut relations = match escape(topic) {
            Cow::Borrowed(_) => self.0.matches(id, topic).await?,
            Cow::Owned(escaped) => self.0.matches(id, &TopicName::from(escaped)).await?,
        };
        if no_local {
            drop_publisher(&mut relations, &publisher);
        }
        Ok(relations)
    }

    async fn is_online(&self, node_id: NodeId, client_id: &str) -> bool {
        self.0.is_online(node_id, client_id).await
    }

    async fn gets(&self, limit: usize) -> Vec<Route> {
        self.0.gets(limit).await
    }

    async fn get(&self, topic: &str) -> Result<Vec<Route>> {
        self.0.get(&escape(topic)).await
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.0.query_subscriptions(q).await
    }

    async fn topics_tree(&self) -> usize {
        self.0.topics_tree().await
    }

    fn topics(&self) -> Counter {
        self.0.topics()
    }

    fn routes(&self) -> Counter {
        self.0.routes()
    }

    fn merge_topics(&self, topics_map: &HashMap<NodeId, Counter>) -> Counter {
        self.0.merge_topics(topics_map)
    }

    fn merge_routes(&self, routes_map: &HashMap<NodeId, Counter>) -> Counter {
        self.0.merge_routes(routes_map)
    }

    async fn list_topics(&self, top: usize) -> Vec<String> {
        self.0.list_topics(top).await
    }

    async fn list_relations(&self, top: usize) -> Vec<serde_json::Value> {
        self.0.list_relations(top).await
    }

    fn relations(&self) -> &AllRelationsMap {
        self.0.relations()
    }
}

/// Removes the publishing session's own subscriptions from a match result.
fn drop_publisher(relations: &mut SubRelationsMap, publisher: &str) {
    for subs in relations.values_mut() {
        subs.retain(|(_, client_id, ..)| &**client_id != publisher);
    }
    relations.retain(|_, subs| !subs.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_dollar_levels_after_the_first_only() {
        assert_eq!(
            escape("$aws/things/t1/jobs/notify-next"),
            "$aws/things/t1/jobs/notify-next"
        );
        assert!(matches!(
            escape("$aws/things/t1/jobs/notify-next"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("$aws/things/t1/jobs/$next/get"),
            "$aws/things/t1/jobs/\u{E000}next/get"
        );
        assert_eq!(escape("a/$b/$c$/d$"), "a/\u{E000}b/\u{E000}c$/d$");
        assert_eq!(escape("$SYS/$x"), "$SYS/\u{E000}x");
        assert_eq!(escape("a/$"), "a/\u{E000}");
        assert_eq!(escape("$aws/things/+/jobs/#"), "$aws/things/+/jobs/#");
        assert_eq!(escape("a$b/c"), "a$b/c");
    }

    #[test]
    fn escaped_topics_parse_in_rmqtt() {
        use std::str::FromStr;
        for t in [
            "$aws/things/t1/jobs/$next/get/accepted",
            "$aws/things/+/jobs/$next/#",
        ] {
            assert!(rmqtt::topic::Topic::from_str(&escape(t)).is_ok(), "{t}");
        }
    }
}
