//! A TCP proxy for fault tests, between Sluice and ClickHouse: pass traffic through, refuse
//! connections (an outage), or forward requests but drop the responses (an insert that
//! succeeded on the server while its answer was lost).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    Refuse = 1,
    DropResponses = 2,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let m = mode.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if m.load(Ordering::SeqCst) == Mode::Refuse as u8 {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, m.clone()));
            }
        });
        Proxy { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies both ways, consulting the mode for every chunk, so pooled connections opened
/// before a mode change obey it too.
async fn relay(client: TcpStream, upstream: SocketAddr, mode: Arc<AtomicU8>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let m = mode.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Refused: the request never reaches the server.
            if m.load(Ordering::SeqCst) == Mode::Refuse as u8
                || sw.write_all(&buf[..n]).await.is_err()
            {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Any mode but Pass: the server answered, the client never hears it.
        if mode.load(Ordering::SeqCst) != Mode::Pass as u8 || cw.write_all(&buf[..n]).await.is_err()
        {
            break;
        }
    }
    up.abort();
    let _ = cw.shutdown().await;
}
