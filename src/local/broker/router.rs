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

use std::borrow::Cow;

use async_trait::async_trait;
use rmqtt::router::{DefaultRouter, Router};
use rmqtt::types::{
    AllRelationsMap, HashMap, Id, NodeId, Route, SubRelationsMap, SubsSearchParams,
    SubsSearchResult, SubscriptionOptions, TopicName,
};
use rmqtt::utils::Counter;
use rmqtt::Result;

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
        match escape(topic) {
            Cow::Borrowed(_) => self.0.matches(id, topic).await,
            Cow::Owned(escaped) => self.0.matches(id, &TopicName::from(escaped)).await,
        }
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
