//! The MQTT connection: one task owns rumqttc's event loop (mutual TLS over rustls),
//! reconnects with backoff and re-subscribes on every ConnAck. It must not interpret
//! payloads: messages are routed to their subscribers by exact topic.
