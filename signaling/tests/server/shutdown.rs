//! Graceful shutdown tells every client and stops.

use crate::support::*;

#[tokio::test]
async fn shutdown_closes_every_websocket_with_1001_and_stops() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (mut a, _) = Client::join(&server, "r", "A").await;
    let (mut b, _) = Client::join(&server, "r", "B").await;
    let mut lobby = Client::connect(&server).await;
    a.recv_type("participant_joined").await;

    let stopping = tokio::spawn(server.shutdown());
    for client in [&mut a, &mut b, &mut lobby] {
        assert_eq!(
            client.closed().await,
            Closed::Frame(1001, "server shutting down".into())
        );
    }
    stopping.await.unwrap().unwrap();

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
