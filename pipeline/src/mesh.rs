//! Connects the processes of a cluster and starts timely's workers over the connections.
//!
//! Each process listens on its own address and connects to every process before it, which
//! accepts; the connecting process says who it is with its index (a big-endian u64, as
//! timely's own set-up does). timely's own set-up polls once a second on both sides, so
//! forming a cluster took up to a second more than the processes need (a tenth of a short
//! run: the cluster bench); here a connection is retried every 50 ms and an accept waits
//! only for the peer.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks, WorkerGuards};
use timely::worker::Worker;
use timely::WorkerConfig;

use crate::cluster::Shape;

/// How often a process says which peers it still waits for.
const WAIT_REPORT: Duration = Duration::from_secs(10);
/// Between tries to connect to a peer that is not listening yet.
const RETRY: Duration = Duration::from_millis(50);

/// Runs `work` on every worker of this process, in the cluster `shape` says (one process: no network).
pub fn execute<T, F>(shape: &Shape, work: F) -> anyhow::Result<WorkerGuards<T>>
where
    T: Send + 'static,
    F: Fn(&mut Worker) -> T + Send + Sync + 'static,
{
    let Some(cluster) = &shape.cluster else {
        return timely::execute(timely::Config::process(shape.workers), work).map_err(|e| anyhow!(e));
    };
    let sockets = connect(&cluster.addresses, cluster.process)?;
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(shape.workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(local, sockets, cluster.process, shape.workers, hooks)
        .map_err(|e| anyhow!("cannot start the cluster's network threads: {e}"))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(guard), WorkerConfig::default(), work).map_err(|e| anyhow!(e))
}

/// A connection to every other process, by index (none at `me`).
pub fn connect(addresses: &[String], me: usize) -> anyhow::Result<Vec<Option<TcpStream>>> {
    let listener = TcpListener::bind(addresses[me].as_str())
        .map_err(|e| anyhow!("cannot listen on {} for the other processes of the cluster: {e}", addresses[me]))?;
    // Accept the later processes while connecting to the earlier ones.
    let later = addresses.len() - me - 1;
    let accepting = std::thread::Builder::new()
        .name("vitrine-cluster-accept".into())
        .spawn(move || accept(&listener, me, later))?;
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(addresses.len());
    for (index, address) in addresses.iter().enumerate().take(me) {
        sockets.push(Some(dial(address, index, me)?));
    }
    sockets.push(None);
    let accepted = accepting.join().map_err(|_| anyhow!("the thread accepting the cluster's connections panicked"))?;
    sockets.extend(
        accepted.map_err(|e| anyhow!("accepting the other processes of the cluster: {e}"))?.into_iter().map(Some),
    );
    tracing::info!(process = me, processes = addresses.len(), "cluster connected");
    Ok(sockets)
}

/// Connects to process `index` at `address`, retrying until it listens.
fn dial(address: &str, index: usize, me: usize) -> anyhow::Result<TcpStream> {
    let started = Instant::now();
    let mut reported = started;
    loop {
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                stream.write_all(&(me as u64).to_be_bytes())?;
                return Ok(stream);
            }
            Err(e) => {
                if reported.elapsed() >= WAIT_REPORT {
                    reported = Instant::now();
                    tracing::warn!(process = index, %address, error = %e, waited_s = started.elapsed().as_secs(),
                        "waiting for another process of the cluster to listen; is it started, and is the hostfile the same everywhere?");
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Accepts the `count` processes after `me`, in index order.
fn accept(listener: &TcpListener, me: usize, count: usize) -> io::Result<Vec<TcpStream>> {
    let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let started = Instant::now();
    listener.set_nonblocking(true)?;
    let mut reported = started;
    while streams.iter().any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream.set_nonblocking(false)?;
                stream.set_nodelay(true)?;
                let mut index = [0u8; 8];
                stream.read_exact(&mut index)?;
                let index = u64::from_be_bytes(index) as usize;
                let slot = index.checked_sub(me + 1).and_then(|i| streams.get_mut(i)).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{from} says it is process {index}, which does not connect to process {me}: are the hostfiles the same?"),
                    )
                })?;
                *slot = Some(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if reported.elapsed() >= WAIT_REPORT {
                    reported = Instant::now();
                    let missing: Vec<usize> =
                        streams.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| me + 1 + i).collect();
                    tracing::warn!(
                        ?missing,
                        waited_s = started.elapsed().as_secs(),
                        "waiting for the other processes of the cluster to connect"
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(streams.into_iter().map(|s| s.expect("every slot filled")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_processes_connect_each_to_each_whatever_order_they_start_in() {
        let ports: Vec<u16> =
            (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        // The last process first, the first one last: the others wait for it.
        let handles: Vec<_> = (0..3)
            .rev()
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::sleep(Duration::from_millis(30));
                std::thread::spawn(move || {
                    let mut sockets = connect(&addresses, me).unwrap();
                    // Each says who it is on every connection, and hears who is at the other end.
                    for s in sockets.iter_mut().flatten() {
                        s.write_all(&[me as u8]).unwrap();
                    }
                    let heard: Vec<Option<u8>> = sockets
                        .iter_mut()
                        .map(|s| {
                            s.as_mut().map(|s| {
                                let mut b = [0u8];
                                s.read_exact(&mut b).unwrap();
                                b[0]
                            })
                        })
                        .collect();
                    (me, heard)
                })
            })
            .collect();
        for handle in handles {
            let (me, heard) = handle.join().unwrap();
            let expected: Vec<Option<u8>> = (0..3).map(|i| (i != me).then_some(i as u8)).collect();
            assert_eq!(heard, expected, "process {me}: slot i is a connection to process i");
        }
    }
}
