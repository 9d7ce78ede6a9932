//! Figure 6: many simulated things against one service. Each simulator is a task with its
//! own mutual-TLS MQTT connection (a certificate per thing) speaking the Jobs device protocol
//! through the daemon's own types (`jobs::topics`, `jobs::wire`): on `notify-next` with an
//! execution it sends `start-next`, and reports SUCCEEDED for what it was given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use iotjobs::jobs::topics;
use iotjobs::jobs::wire::{
    JobExecutionStatus, NextJobExecutionChangedEvent, StartNextPendingJobExecutionRequest,
    StartNextPendingJobExecutionResponse, UpdateJobExecutionRequest,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, Semaphore};

use super::mem::{self, Mem};
use super::service::{command_job, Service, WAIT};
use super::Options;

#[derive(Debug, Default)]
pub struct ScaleFigures {
    pub requested: usize,
    pub things_created_s: Option<f64>,
    /// Simulators connected and subscribed.
    pub connected: usize,
    pub connect_s: Option<f64>,
    /// Executions reported SUCCEEDED (accepted by the service).
    pub completed: usize,
    pub executions_per_s: Option<f64>,
    pub service_before: Option<Mem>,
    pub service_connected: Option<Mem>,
    /// CPU (user + system, ms) spent from the first CreateJob to the last SUCCEEDED by the
    /// service process and by this process (the simulators, plus the control-plane client).
    pub service_cpu_ms: Option<f64>,
    pub harness_cpu_ms: Option<f64>,
}

enum SimEvent {
    Ready,
    Done(Instant),
}

/// Most CreateJob targets per call (AWS's limit).
const TARGETS_PER_JOB: usize = 100;
/// Handshakes in flight at once: the broker's accept queue is finite.
const CONNECTING: usize = 64;
/// Concurrent control-plane requests.
const API_PARALLEL: usize = 8;

pub async fn run(opts: &Options, svc: &Arc<Service>, out: &mut ScaleFigures) -> anyhow::Result<()> {
    let n = opts.things;
    out.requested = n;
    out.service_before = Some(mem::sample(svc.pid)?);
    let names: Vec<String> = (0..n).map(|i| format!("sim-{i:05}")).collect();

    let t = Instant::now();
    let arns = create_things(svc, &names).await?;
    out.things_created_s = Some(t.elapsed().as_secs_f64());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let t = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for name in &names {
        let tls = svc
            .pki
            .client_tls_config(&svc.pki.issue_device_cert(name)?)?;
        clients.push(spawn_sim(
            svc.mqtt,
            name.clone(),
            tls,
            gate.clone(),
            tx.clone(),
        ));
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + opts.connect_timeout;
    while out.connected < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(SimEvent::Ready)) => out.connected += 1,
            Ok(Some(SimEvent::Done(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out.connect_s = Some(t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.service_connected = Some(mem::sample(svc.pid)?);
    if out.connected == 0 {
        return Err(anyhow!("no simulator connected"));
    }

    // One no-op job per thing, created in chunks of AWS's target limit. (The line below
    // lets a profiler attach to the service for this phase only.)
    eprintln!(
        "bench: scale: {} things connected (service pid {}); creating the jobs",
        out.connected, svc.pid
    );
    let doc = command_job("true");
    let cpu0 = (mem::cpu_ms(svc.pid)?.0, mem::cpu_ms(std::process::id())?.0);
    let t0 = Instant::now();
    let chunks: Vec<Vec<String>> = arns
        .chunks(TARGETS_PER_JOB)
        .map(<[String]>::to_vec)
        .collect();
    for (i, chunk) in chunks.iter().enumerate() {
        svc.create_job(&format!("scale-{i}"), chunk, &doc).await?;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = t0;
    while out.completed < out.connected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(SimEvent::Done(at))) => {
                out.completed += 1;
                last = last.max(at);
            }
            Ok(Some(SimEvent::Ready)) => out.connected += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let cpu1 = (mem::cpu_ms(svc.pid)?.0, mem::cpu_ms(std::process::id())?.0);
    out.service_cpu_ms = Some(cpu1.0 - cpu0.0);
    out.harness_cpu_ms = Some(cpu1.1 - cpu0.1);
    if out.completed > 0 {
        out.executions_per_s = Some(out.completed as f64 / last.duration_since(t0).as_secs_f64());
    }
    for c in clients {
        c.abort();
    }
    Ok(())
}

async fn create_things(svc: &Arc<Service>, names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut arns = vec![String::new(); names.len()];
    let per = names.len().div_ceil(API_PARALLEL).max(1);
    let mut tasks = Vec::new();
    for (k, part) in names.chunks(per).enumerate() {
        let svc = svc.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(part.len());
            for name in &part {
                out.push(svc.create_thing(name).await?);
            }
            anyhow::Ok((k * per, out))
        }));
    }
    for t in tasks {
        let (start, got) = t.await??;
        for (i, arn) in got.into_iter().enumerate() {
            arns[start + i] = arn;
        }
    }
    Ok(arns)
}

fn spawn_sim(
    addr: std::net::SocketAddr,
    thing: String,
    tls: Arc<rustls::ClientConfig>,
    gate: Arc<Semaphore>,
    events: mpsc::UnboundedSender<SimEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(permit) = gate.acquire_owned().await else {
            return;
        };
        let mut permit = Some(permit);
        let mut opts = MqttOptions::new(thing.clone(), addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(600));
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        eventloop.set_network_options(net);
        let start_next = topics::start_next(&thing);
        let notify_next = topics::notify_next(&thing);
        let start_accepted = topics::accepted(&start_next);
        let filters = [
            notify_next.clone(),
            start_accepted.clone(),
            topics::rejected(&start_next),
            format!("$aws/things/{thing}/jobs/+/update/accepted"),
            format!("$aws/things/{thing}/jobs/+/update/rejected"),
        ];
        for f in filters {
            if client.subscribe(f, QoS::AtLeastOnce).await.is_err() {
                return;
            }
        }
        let mut subacks = 0;
        let mut done = false;
        // Like a real device: poll with start-next now and then (a lost notification must
        // not strand a thing) and retry a rejected request (RequestThrottled) after a pause.
        let mut poll = tokio::time::interval(POLL);
        poll.tick().await;
        loop {
            let packet = tokio::select! {
                r = eventloop.poll() => match r {
                    Ok(Event::Incoming(p)) => p,
                    Ok(Event::Outgoing(_)) => continue,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
                _ = poll.tick() => {
                    if subacks >= 5 && !done {
                        publish_later(&client, &start_next, start_next_body(), Duration::ZERO);
                    }
                    continue;
                }
            };
            match packet {
                Packet::SubAck(_) => {
                    subacks += 1;
                    if subacks == 5 {
                        permit.take();
                        let _ = events.send(SimEvent::Ready);
                    }
                }
                Packet::Publish(p) if p.topic == notify_next => {
                    let has_job =
                        serde_json::from_slice::<NextJobExecutionChangedEvent>(&p.payload)
                            .is_ok_and(|e| e.execution.is_some());
                    if has_job {
                        publish_later(&client, &start_next, start_next_body(), Duration::ZERO);
                    }
                }
                Packet::Publish(p) if p.topic == start_accepted => {
                    let Ok(r) =
                        serde_json::from_slice::<StartNextPendingJobExecutionResponse>(&p.payload)
                    else {
                        continue;
                    };
                    if let Some(exec) = r.execution {
                        let req = UpdateJobExecutionRequest::new(JobExecutionStatus::Succeeded);
                        let body = serde_json::to_vec(&req).unwrap_or_default();
                        let topic = topics::update(&thing, &exec.job_id);
                        publish_later(&client, &topic, body, Duration::ZERO);
                    }
                }
                Packet::Publish(p) if p.topic.ends_with("/rejected") => {
                    // Start over: start-next returns the IN_PROGRESS execution again.
                    publish_later(&client, &start_next, start_next_body(), retry_pause());
                }
                Packet::Publish(p) if !done && p.topic.ends_with("/update/accepted") => {
                    done = true;
                    let _ = events.send(SimEvent::Done(Instant::now()));
                }
                _ => {}
            }
        }
    })
}

/// How often an idle simulator polls with start-next.
const POLL: Duration = Duration::from_secs(10);

fn start_next_body() -> Vec<u8> {
    serde_json::to_vec(&StartNextPendingJobExecutionRequest::default()).unwrap_or_default()
}

/// 100–600 ms, so throttled things do not all come back at once.
fn retry_pause() -> Duration {
    Duration::from_millis(fastrand::u64(100..600))
}

/// Publishes from a task of its own: the simulator's event loop must keep polling (the
/// client's request queue only drains while it does).
fn publish_later(client: &AsyncClient, topic: &str, body: Vec<u8>, after: Duration) {
    let client = client.clone();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        if !after.is_zero() {
            tokio::time::sleep(after).await;
        }
        let _ = client.publish(topic, QoS::AtLeastOnce, false, body).await;
    });
}
