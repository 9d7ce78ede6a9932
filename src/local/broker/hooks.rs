//! The rmqtt hook handler that enforces `acl.rs` (authentication, subscribe and publish
//! checks) and reports what happens to the [`BrokerEvent`] stream. It holds no state of its
//! own: the identity of a session is its client id, which authentication tied to the
//! certificate (its attachments when the service recorded it, else its CN).

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ListenerId, PublishAclResult, Reason, SubscribeAclResult};
use tokio::sync::broadcast;

use super::acl::{self, Identity, Transport};
use super::BrokerEvent;

#[derive(Clone)]
pub(super) struct AclHooks {
    pub events: broadcast::Sender<BrokerEvent>,
    pub tls_listener: ListenerId,
    pub tcp_listener: ListenerId,
    /// The service's recorded certificates; `None` (a broker without the service): the
    /// certificate CN alone identifies a device.
    pub principals: Option<acl::Principals>,
}

impl AclHooks {
    fn emit(&self, event: BrokerEvent) {
        // No receiver is fine: events are for observers (tests, `watch`), not for control.
        let _ = self.events.send(event);
    }

    fn identity(s: &Session) -> Option<Identity> {
        Identity::from_client_id(&s.id.client_id)
    }
}

#[async_trait]
impl Handler for AclHooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let id = ci.id();
                let client_id: &str = ci.client_id();
                let transport = if id.lid == self.tls_listener {
                    Some(Transport::MutualTls)
                } else if id.lid == self.tcp_listener {
                    Some(Transport::PlainTcp)
                } else {
                    None
                };
                let cert = ci.cert().map(|c| c.common_name.as_deref());
                // The serial is only trusted because the TLS listener accepts nothing but
                // certificates of the local CA, whose serials are unique.
                let bound = match (
                    &self.principals,
                    ci.cert().and_then(|c| c.serial.as_deref()),
                ) {
                    (Some(p), Some(serial)) => p.lookup(serial),
                    _ => None,
                };
                let result = match transport {
                    Some(t) => acl::authenticate_bound(t, client_id, cert, bound.as_ref())
                        .map_err(|e| e.to_string()),
                    None => Err(format!("unknown listener {}", id.lid)),
                };
                match result {
                    Ok(_) => (
                        false,
                        Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
                    ),
                    Err(reason) => {
                        tracing::warn!(client_id, remote = ?id.remote_addr, %reason, "MQTT connection refused");
                        self.emit(BrokerEvent::ConnectRefused {
                            client_id: client_id.into(),
                            reason,
                        });
                        (
                            false,
                            Some(HookResult::AuthResult(AuthResult::NotAuthorized)),
                        )
                    }
                }
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let filter: &str = &sub.topic_filter;
                if Self::identity(s).is_some_and(|i| acl::may_subscribe(&i, filter)) {
                    let ok = SubscribeAclResult::new_success(sub.opts.qos(), None);
                    return (false, Some(HookResult::SubscribeAclResult(ok)));
                }
                let client_id: &str = &s.id.client_id;
                tracing::warn!(
                    client_id,
                    topic_filter = filter,
                    "subscribe refused by policy"
                );
                self.emit(BrokerEvent::SubscribeDenied {
                    client_id: client_id.into(),
                    topic_filter: filter.into(),
                });
                let denied = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(denied)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let topic: &str = &p.topic;
                if Self::identity(s).is_some_and(|i| acl::may_publish(&i, topic)) {
                    return (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult::allow())),
                    );
                }
                let client_id: &str = &s.id.client_id;
                tracing::warn!(
                    client_id,
                    topic,
                    "publish refused by policy; disconnecting the client"
                );
                self.emit(BrokerEvent::PublishDenied {
                    client_id: client_id.into(),
                    topic: topic.into(),
                });
                // Like AWS IoT Core: an unauthorized publish closes the connection (MQTT 3.1.1
                // has no negative PUBACK, so a silent drop would look like success).
                let denied = PublishAclResult::rejected(true, Some("not authorized".into()));
                (false, Some(HookResult::PublishAclResult(denied)))
            }
            Parameter::ClientConnected(s) => {
                self.emit(BrokerEvent::Connected {
                    client_id: s.id.client_id.to_string(),
                });
                (true, acc)
            }
            Parameter::MessageDropped(to, _, publish, Reason::MessageQueueFull) => {
                // rmqtt drops silently otherwise: a lost request or notification shows only
                // as a device that waits for its next poll.
                let client_id = to.as_ref().map_or("-", |id| &*id.client_id);
                tracing::warn!(
                    client_id,
                    topic = %publish.topic,
                    "message dropped: the session's queue is full"
                );
                (true, acc)
            }
            Parameter::ClientDisconnected(s, reason) => {
                let clean = is_clean_disconnect(reason);
                self.emit(BrokerEvent::Disconnected {
                    client_id: s.id.client_id.to_string(),
                    clean,
                });
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// True if the client sent an MQTT DISCONNECT (rmqtt records it among the reasons).
fn is_clean_disconnect(reason: &Reason) -> bool {
    match reason {
        Reason::ConnectDisconnect(_) => true,
        Reason::Reasons(reasons) => reasons.iter().any(is_clean_disconnect),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_disconnect_is_recognised_among_reasons() {
        assert!(is_clean_disconnect(&Reason::ConnectDisconnect(None)));
        assert!(is_clean_disconnect(&Reason::Reasons(vec![
            Reason::ConnectDisconnect(None)
        ])));
        assert!(!is_clean_disconnect(&Reason::ConnectRemoteClose));
        assert!(!is_clean_disconnect(&Reason::ConnectKeepaliveTimeout));
        assert!(!is_clean_disconnect(&Reason::Reasons(vec![
            Reason::ConnectReadWriteError
        ])));
    }
}
