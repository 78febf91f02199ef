//! The single-port media engine (issue 10): `rtc` (sans-IO) PeerConnections driven by
//! worker threads, each owning one UDP socket and the rooms pinned to it.
//!
//! ```text
//! datagrams ─▶ udp.rs recv_batch ─▶ demux.rs (ufrag, then address) ─▶ Peer::read
//!   ─▶ publisher's RTP ─▶ forwarder (SSRC/PT/seq/ts per subscriber) ─▶ subscriber PCs
//!   ─▶ poll_write, grouped by destination ─▶ udp.rs send_batch
//! ```
//!
//! Everything a packet touches is owned by its worker thread: no lock, no channel on the
//! per-packet path. Signaling reaches a worker through its command channel ([`Command`]);
//! events go back on each participant's channel, as with the per-connection engine.

mod downstream;
#[cfg(test)]
mod ice_tests;
mod peer;
mod sdp;
#[cfg(test)]
mod srtp_tests;
mod tcp;
mod worker;

use crate::rtc::NetSettings;
use crate::stats::Counters;
use crate::{IceCandidate, ParticipantEvent, ParticipantId, PcKind, SfuConfig, SfuError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A room's key on its worker (unique per engine).
pub(crate) type RoomKey = u64;

/// What signaling asks a worker to do.
pub(crate) enum Command {
    /// Creates a room.
    OpenRoom { room: RoomKey, name: String },
    /// Closes a room: its participants are removed.
    CloseRoom { room: RoomKey },
    /// Adds a participant and subscribes it to every published track.
    Join {
        room: RoomKey,
        id: ParticipantId,
        events: mpsc::UnboundedSender<ParticipantEvent>,
    },
    /// The client's publish offer; reply with our answer.
    PublishOffer {
        room: RoomKey,
        id: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    /// The client's answer to our subscribe offer.
    SubscribeAnswer {
        room: RoomKey,
        id: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// A client ICE candidate.
    Candidate {
        room: RoomKey,
        id: ParticipantId,
        pc: PcKind,
        candidate: IceCandidate,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// Removes a participant; reply when done.
    Leave {
        room: RoomKey,
        id: ParticipantId,
        reply: oneshot::Sender<()>,
    },
    /// Closes everything and ends the worker.
    Shutdown { reply: oneshot::Sender<()> },
    /// Blocks the worker thread this long, as an overloaded worker would be (tests).
    #[cfg(feature = "test-tap")]
    Stall(std::time::Duration),
}

/// The engine's side of one worker.
struct WorkerLink {
    commands: mpsc::UnboundedSender<Command>,
    addr: SocketAddr,
    rooms: AtomicUsize,
}

/// The worker threads and how to reach them.
pub(crate) struct Engine {
    workers: Vec<Arc<WorkerLink>>,
    next_room: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Binds one UDP socket per worker (`port`, `port + 1`, ...) and starts the workers.
    pub fn start(
        config: &SfuConfig,
        port: u16,
        counters: Arc<Counters>,
        #[cfg(feature = "test-tap")] tap: crate::tap::TapSlot,
    ) -> Result<Engine, SfuError> {
        let net = NetSettings {
            bind_ip: config.bind_ip,
            public_ip: config.public_ip,
        };
        let mut workers = Vec::new();
        for i in 0..config.udp_workers.max(1) {
            let port = if port == 0 {
                0
            } else {
                u16::try_from(usize::from(port) + i)
                    .map_err(|_| SfuError::Config("UDP worker ports run past 65535".into()))?
            };
            let (socket, ice_tcp) = bind_worker(config, port)?;
            let addr = socket.local_addr();
            let (tx, rx) = mpsc::unbounded_channel();
            let settings = worker::Settings {
                net,
                connect_timeout: config.connect_timeout,
                ingress_max_age: config.ingress_max_age,
                pli_min_interval: config.pli_min_interval,
                counters: Arc::clone(&counters),
                #[cfg(feature = "test-tap")]
                tap: tap.clone(),
            };
            std::thread::Builder::new()
                .name(format!("sfu-worker-{i}"))
                .spawn(move || worker::run(socket, ice_tcp, rx, settings))
                .map_err(|e| SfuError::Rtc(format!("cannot start a media worker: {e}")))?;
            workers.push(Arc::new(WorkerLink {
                commands: tx,
                addr,
                rooms: AtomicUsize::new(0),
            }));
        }
        Ok(Engine {
            workers,
            next_room: Default::default(),
        })
    }

    /// The workers' UDP socket addresses (what ICE candidates announce, before `public_ip`).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.addr).collect()
    }

    /// Opens a room on the worker with the fewest rooms.
    pub fn open_room(&self, name: &str) -> EngineRoom {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.rooms.load(Ordering::Relaxed))
            .map(Arc::clone)
            .unwrap_or_else(|| unreachable!("an engine has at least one worker"));
        let key = self.next_room.fetch_add(1, Ordering::Relaxed);
        worker.rooms.fetch_add(1, Ordering::Relaxed);
        let _ = worker.commands.send(Command::OpenRoom {
            room: key,
            name: name.to_owned(),
        });
        EngineRoom {
            worker,
            key,
            closed: Arc::default(),
            ids: Arc::default(),
        }
    }

    /// Blocks every worker thread for `duration` (tests: what falling behind does).
    #[cfg(feature = "test-tap")]
    pub fn stall(&self, duration: std::time::Duration) {
        for worker in &self.workers {
            let _ = worker.commands.send(Command::Stall(duration));
        }
    }

    /// Closes every room and stops the workers.
    pub async fn shutdown(&self) {
        for worker in &self.workers {
            let (tx, rx) = oneshot::channel();
            if worker
                .commands
                .send(Command::Shutdown { reply: tx })
                .is_ok()
            {
                let _ = rx.await;
            }
        }
    }
}

/// Binds a worker's UDP socket and, unless ICE-TCP is off, its TCP listener on the same
/// port number. With port 0 the OS picks the UDP port; if that number is taken for TCP,
/// another is tried.
fn bind_worker(
    config: &SfuConfig,
    port: u16,
) -> Result<
    (
        crate::udp::BatchSocket,
        Option<crate::ice_tcp::IceTcpListener>,
    ),
    SfuError,
> {
    const ATTEMPTS_FOR_AN_OS_CHOSEN_PORT: usize = 8;
    let attempts = if port == 0 {
        ATTEMPTS_FOR_AN_OS_CHOSEN_PORT
    } else {
        1
    };
    let mut last_err = None;
    for _ in 0..attempts {
        let addr = SocketAddr::new(config.bind_ip, port);
        let socket = crate::udp::BatchSocket::bind(addr)
            .map_err(|e| SfuError::Config(format!("cannot bind UDP {addr}: {e}")))?;
        if config.ice_tcp_max_conns == 0 {
            return Ok((socket, None));
        }
        let addr = socket.local_addr();
        let tcp_config = crate::ice_tcp::IceTcpConfig {
            max_conns: config.ice_tcp_max_conns,
            ..Default::default()
        };
        match crate::ice_tcp::IceTcpListener::bind(addr, tcp_config) {
            Ok(listener) => return Ok((socket, Some(listener))),
            Err(e) => {
                last_err = Some(SfuError::Config(format!(
                    "cannot listen for ICE-TCP on {addr}: {e}"
                )))
            }
        }
    }
    Err(last_err.unwrap_or_else(|| SfuError::Config("no media port could be bound".into())))
}

/// One room on a worker; dropping it closes the room.
pub(crate) struct EngineRoom {
    worker: Arc<WorkerLink>,
    key: RoomKey,
    closed: Arc<AtomicBool>,
    /// Participants joined and not yet left: ids are unique per room.
    ids: Arc<Mutex<HashSet<ParticipantId>>>,
}

impl EngineRoom {
    /// Adds participant `id`; its events go to `events`.
    pub fn join(
        &self,
        id: ParticipantId,
        events: mpsc::UnboundedSender<ParticipantEvent>,
    ) -> Result<MemberHandle, SfuError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SfuError::ShuttingDown);
        }
        if !lock(&self.ids).insert(id) {
            return Err(SfuError::DuplicateParticipant(id));
        }
        self.worker
            .commands
            .send(Command::Join {
                room: self.key,
                id,
                events,
            })
            .map_err(|_| SfuError::ShuttingDown)?;
        Ok(MemberHandle {
            worker: Arc::clone(&self.worker),
            room: self.key,
            id,
            left: Arc::default(),
            ids: Arc::clone(&self.ids),
        })
    }
}

impl Drop for EngineRoom {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.worker.rooms.fetch_sub(1, Ordering::Relaxed);
        let _ = self
            .worker
            .commands
            .send(Command::CloseRoom { room: self.key });
    }
}

/// Signaling's handle on one participant of the engine.
#[derive(Clone)]
pub(crate) struct MemberHandle {
    worker: Arc<WorkerLink>,
    room: RoomKey,
    id: ParticipantId,
    left: Arc<AtomicBool>,
    ids: Arc<Mutex<HashSet<ParticipantId>>>,
}

impl MemberHandle {
    pub async fn publish_offer(&self, sdp: &str) -> Result<String, SfuError> {
        let (room, id, sdp) = (self.room, self.id, sdp.to_owned());
        self.ask(|reply| Command::PublishOffer {
            room,
            id,
            sdp,
            reply,
        })
        .await?
    }

    pub async fn subscribe_answer(&self, sdp: &str) -> Result<(), SfuError> {
        let (room, id, sdp) = (self.room, self.id, sdp.to_owned());
        self.ask(|reply| Command::SubscribeAnswer {
            room,
            id,
            sdp,
            reply,
        })
        .await?
    }

    pub async fn add_ice_candidate(
        &self,
        pc: PcKind,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        let (room, id) = (self.room, self.id);
        self.ask(|reply| Command::Candidate {
            room,
            id,
            pc,
            candidate,
            reply,
        })
        .await?
    }

    pub async fn leave(&self) {
        if self.left.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.ids).remove(&self.id);
        let (tx, rx) = oneshot::channel();
        let sent = self.worker.commands.send(Command::Leave {
            room: self.room,
            id: self.id,
            reply: tx,
        });
        if sent.is_ok() {
            let _ = rx.await;
        }
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        if self.left.load(Ordering::Acquire) {
            return Err(SfuError::ParticipantGone);
        }
        let (tx, rx) = oneshot::channel();
        self.worker
            .commands
            .send(command(tx))
            .map_err(|_| SfuError::ParticipantGone)?;
        rx.await.map_err(|_| SfuError::ParticipantGone)
    }
}
