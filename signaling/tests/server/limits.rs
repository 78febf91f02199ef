//! Room and participant limits over the wire.

use signaling::{Config, Limits};

use crate::support::*;

#[tokio::test]
async fn room_full_and_too_many_rooms() {
    let server = start(Config {
        limits: Limits {
            max_rooms: 2,
            max_participants: 2,
            ..Limits::default()
        },
        ..Config::ephemeral()
    })
    .await;
    let (_a, _) = Client::join(&server, "one", "A").await;
    let (_b, _) = Client::join(&server, "one", "B").await;
    let (_c, _) = Client::join(&server, "two", "C").await;

    let mut d = Client::connect(&server).await;
    d.send(join_msg("one", "D")).await;
    d.recv_error("room_full").await;
    d.send(join_msg("three", "D")).await;
    d.recv_error("too_many_rooms").await;
    // A refused join leaves the connection usable: room two has space.
    d.send(join_msg("two", "D")).await;
    let welcome = d.recv_type("welcome").await;
    assert_eq!(welcome["participants"].as_array().unwrap().len(), 1);
    assert_eq!(server.counts(), (2, 4));
}

#[tokio::test]
async fn connection_limit_refuses_with_503() {
    let server = start(Config {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..Config::ephemeral()
    })
    .await;
    let a = Client::connect(&server).await;
    let _b = Client::connect(&server).await;
    assert_eq!(
        Client::connect_with_origin(&server, "http://localhost")
            .await
            .err(),
        Some(503)
    );
    // A slot frees up when a connection ends.
    a.close().await;
    crate::flows::wait_until(|| server.open_connections() < 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    Client::connect(&server).await;
}
