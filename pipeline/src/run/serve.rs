//! Signals and the viewer server's access rules.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use anyhow::anyhow;
use vitrine_connectors::server::access::Access;
use vitrine_connectors::server::{self, ServerState};
use vitrine_schemas::spec::ServerSpec;

use crate::supervise::Supervisor;

/// Set once Ctrl-C or SIGTERM came: the run's own end also sets its stop flag, so the flag
/// alone cannot tell a finished run from an interrupted one. Signals are per process.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C or SIGTERM came while this process ran.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// Ctrl-C or SIGTERM: stop the sources and drain. A second one exits at once.
pub async fn watch_signals(stop: Arc<AtomicBool>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term_recv => {},
        }
        SIGNALLED.store(true, Ordering::Relaxed);
        if stop.swap(true, Ordering::Relaxed) {
            tracing::warn!("second interrupt: exiting now");
            std::process::exit(130);
        }
        tracing::info!("stopping: finishing the frames in flight (interrupt again to exit now)");
    }
}

/// The server's access rules; the token secret comes from the environment variable the spec names.
pub fn viewer_access(server: &ServerSpec) -> anyhow::Result<Access> {
    let token_secret = match &server.token_secret_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow!("server.token_secret_env names `{var}`, but it is not set: export the secret that signs viewer tokens")
                })?
                .into_bytes(),
        ),
        None => None,
    };
    Ok(Access {
        allowed_origins: server.allowed_origins.clone(),
        token_secret,
        max_viewers: server.max_viewers,
        max_viewers_per_stream: server.max_viewers_per_stream.unwrap_or(0),
        max_viewers_per_ip: server.max_viewers_per_ip.unwrap_or(0),
        trusted_proxies: server.trusted_proxies.clone(),
        per_ip: Default::default(),
    })
}

/// Starts the server thread: a small tokio runtime that watches for signals and, with a
/// `state`, serves viewers and operators. Returns once it listens (or failed to).
pub(super) fn start(
    state: Option<(SocketAddr, ServerState)>,
    stop: Arc<AtomicBool>,
    server_done: Arc<tokio::sync::Notify>,
    supervisor: Supervisor,
) -> anyhow::Result<JoinHandle<()>> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new().name("vitrine-server".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            tokio::spawn(watch_signals(stop));
            match state {
                Some((addr, state)) => {
                    let listener = tokio::net::TcpListener::bind(addr).await;
                    match listener {
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "cannot listen on {addr}: {e}. Is another vitrine running? Set server.listen or VITRINE_LISTEN"
                            )));
                        }
                        Ok(listener) => {
                            drop(listener); // bound successfully: serve() binds again right away
                            let _ = ready_tx.send(Ok(()));
                            let shutdown = async move { server_done.notified().await };
                            if let Err(e) = server::serve(addr, state, shutdown).await {
                                supervisor.fail(format!("the viewer server on {addr} stopped: {e}"));
                            }
                        }
                    }
                }
                None => {
                    let _ = ready_tx.send(Ok(()));
                    server_done.notified().await;
                }
            }
        });
    })?;
    ready_rx.recv().map_err(|_| anyhow!("the server thread died"))?.map_err(|e| anyhow!(e))?;
    Ok(thread)
}
