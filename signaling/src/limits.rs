//! The numbers that keep one client from hurting the others.
//!
//! Every limit has an embedded default; `sealed serve` exposes the ones an operator
//! tunes as flags. They are enforced at `accept` (connections, per address), by the
//! HTTP layer (header timeout), the WebSocket layer (hard frame cap), the parser
//! (message and payload sizes), the join path (per-address joins) and the room
//! registry (rooms, participants per room).

use std::time::Duration;

/// Resource limits of one server.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most rooms that may exist at once; a `join` that would create one more gets
    /// `too_many_rooms`.
    pub max_rooms: usize,
    /// Most participants in one room; one more gets `room_full`.
    pub max_participants: usize,
    /// Most simultaneous TCP connections (HTTP, WebSocket joined or not, or silent);
    /// more get HTTP 503. The server lowers it to its descriptor budget
    /// ([`crate::descriptors::connection_budget`]), so the default means "as many as
    /// the descriptor limit allows".
    pub max_connections: usize,
    /// Most simultaneous connections from one client address.
    pub max_connections_per_address: usize,
    /// Joins one client address may make per minute (a bucket of this size that
    /// refills over a minute).
    pub joins_per_minute_per_address: u32,
    /// Most participants from one client address in one room.
    pub participants_per_address_per_room: usize,
    /// How long a client may take to send a complete HTTP request head (the first
    /// one, the WebSocket upgrade, or the next one on a kept-alive connection). A
    /// silent or trickling client is disconnected after it.
    pub header_timeout: Duration,
    /// Largest text message the protocol accepts, in bytes. A larger one gets
    /// `too_large` and is dropped; the connection stays usable.
    pub max_message_bytes: usize,
    /// Largest message the WebSocket layer reads at all. A larger one closes the
    /// connection with 1009 (message too big) because it is never buffered. Must be
    /// ≥ `max_message_bytes`.
    pub max_frame_bytes: usize,
    /// Largest decoded `e2ee` payload, in bytes.
    pub max_e2ee_payload_bytes: usize,
    /// Largest decoded `chat` payload, in bytes.
    pub max_chat_payload_bytes: usize,
    /// Sustained `chat` messages per second one connection may send (a bucket of its
    /// own, on top of the general one: chat fans out to the whole room).
    pub chat_rate_per_second: u32,
    /// `chat` messages a connection may send in a burst.
    pub chat_rate_burst: u32,
    /// Sustained messages per second one connection may send (token bucket rate).
    pub rate_per_second: u32,
    /// Messages a connection may send in a burst (token bucket size).
    pub rate_burst: u32,
    /// Messages dropped in one flood (without a token regained in between) before the
    /// server gives up on the connection and closes it with 1008 (policy violation).
    pub flood_close_after: u32,
    /// Messages queued for one client before it counts as too slow and is
    /// disconnected (1008): the server never lets one reader hold memory hostage.
    pub outbound_queue: usize,
    /// How long a connection may stay open without joining.
    pub join_timeout: Duration,
    /// The server pings every client this often. It keeps reverse proxies from
    /// closing quiet connections (nginx's default idle timeout is 60 s) and finds
    /// dead peers: a client that sends nothing at all, not even the pong a browser
    /// sends automatically, for two intervals is dropped.
    pub keepalive_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rooms: 1000,
            max_participants: 100,
            max_connections: 100_000,
            max_connections_per_address: 500,
            joins_per_minute_per_address: 300,
            participants_per_address_per_room: 50,
            header_timeout: Duration::from_secs(5),
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 256 * 1024,
            max_e2ee_payload_bytes: 16 * 1024,
            max_chat_payload_bytes: 8 * 1024,
            chat_rate_per_second: 5,
            chat_rate_burst: 10,
            rate_per_second: 50,
            rate_burst: 100,
            flood_close_after: 200,
            outbound_queue: 1024,
            join_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(25),
        }
    }
}
