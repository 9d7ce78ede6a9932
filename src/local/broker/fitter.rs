//! Per-session limits: rmqtt's defaults, except for the service identity's sessions.
//!
//! Every device request of the fleet goes to the one service session. rmqtt queues what
//! a session cannot take yet (16 unacknowledged QoS 1 messages in flight) in a queue of
//! `max_mqueue_len` (1,000 here, sized for an offline device) and silently drops what
//! does not fit. When thousands of things answered the same CreateJob at once, their
//! `start-next` requests overflowed that queue and were lost; the things only recovered
//! with their next poll, seconds later. The service session gets a deep queue and a wide
//! in-flight window instead; the service itself answers `RequestThrottled` when it cannot
//! keep up (see `local::service::task`), which devices retry.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use rmqtt::codec::types::Publish;
use rmqtt::fitter::{DefaultFitter, Fitter, FitterManager};
use rmqtt::types::{ConnectInfo, Disconnect, FitterType, Id, ListenerConfig};
use rmqtt::Result;

use super::acl::Identity;

/// Messages queued for a service session before the broker drops any.
pub const SERVICE_QUEUE: usize = 1 << 17;
/// Unacknowledged QoS 1 messages in flight to a service session.
pub const SERVICE_INFLIGHT: u16 = 1024;

pub struct Fitters;

impl FitterManager for Fitters {
    fn create(&self, conn_info: Arc<ConnectInfo>, id: Id, cfg: ListenerConfig) -> FitterType {
        let service = Identity::from_client_id(&id.client_id) == Some(Identity::Service);
        let default = DefaultFitter::new(conn_info, id, cfg);
        if service {
            Arc::new(ServiceFitter(default))
        } else {
            Arc::new(default)
        }
    }
}

/// rmqtt's default fitter with a deep queue and a wide in-flight window.
struct ServiceFitter(DefaultFitter);

impl Fitter for ServiceFitter {
    fn keep_alive(&self, keep_alive: &mut u16) -> Result<u16> {
        self.0.keep_alive(keep_alive)
    }

    fn max_mqueue_len(&self) -> usize {
        SERVICE_QUEUE.max(self.0.max_mqueue_len())
    }

    fn mqueue_rate_limit(&self) -> (NonZeroU32, Duration) {
        self.0.mqueue_rate_limit()
    }

    fn max_inflight(&self) -> NonZeroU16 {
        NonZeroU16::new(SERVICE_INFLIGHT)
            .unwrap_or(NonZeroU16::MIN)
            .max(self.0.max_inflight())
    }

    fn session_expiry_interval(&self, d: Option<&Disconnect>) -> Duration {
        self.0.session_expiry_interval(d)
    }

    fn message_expiry_interval(&self, publish: &Publish) -> Duration {
        self.0.message_expiry_interval(publish)
    }

    fn max_client_topic_aliases(&self) -> u16 {
        self.0.max_client_topic_aliases()
    }

    fn max_server_topic_aliases(&self) -> u16 {
        self.0.max_server_topic_aliases()
    }
}
