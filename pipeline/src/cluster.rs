//! The shape of a run: worker threads per process, and the processes of a timely cluster.
//!
//! Workers are numbered across the cluster: process `i` runs workers `i*W .. (i+1)*W`. Kafka
//! partition `p` is read by worker `p mod (W*P)`, and a stream's state lives with the worker
//! that reads its partition (see `vitrine_operators::stream_route`), so the only records that
//! cross processes are those of the catalog join (keyed by label).

use std::path::Path;

use anyhow::{anyhow, bail, Context};

/// Where this process stands in its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index, 0-based.
    pub process: usize,
    /// `host:port` of every process, in process order; this process listens on its own.
    pub addresses: Vec<String>,
}

impl Cluster {
    /// A cluster of `processes` from a hostfile: one `host:port` a line, process 0 first (blank
    /// lines and `#` comments are skipped; lines past `processes` are ignored).
    pub fn from_hostfile(processes: usize, process: usize, hostfile: &Path) -> anyhow::Result<Cluster> {
        let text = std::fs::read_to_string(hostfile)
            .with_context(|| format!("cannot read the hostfile {}", hostfile.display()))?;
        Cluster::from_hosts(processes, process, &text)
            .with_context(|| format!("in the hostfile {}", hostfile.display()))
    }

    /// A cluster of the pods of a Kubernetes StatefulSet behind a headless Service: this pod
    /// is `{set}-{ordinal}` (its hostname) and process `ordinal`; process `i` is
    /// `{set}-{i}.{service}:{port}` (the pods' stable DNS names), with `service` given as
    /// `name.namespace.svc.cluster.local:port` (or any suffix the pods resolve).
    pub fn from_stateful_set(processes: usize, pod_name: &str, service: &str) -> anyhow::Result<Cluster> {
        let (set, ordinal) = pod_name.rsplit_once('-').ok_or_else(|| {
            anyhow!("the pod name `{pod_name}` is not a StatefulSet pod's (`name-ordinal`): set VITRINE_PROCESS_ID and a hostfile instead")
        })?;
        let process: usize = ordinal
            .parse()
            .map_err(|_| anyhow!("the pod name `{pod_name}` does not end with an ordinal (`name-0`, `name-1`, ...)"))?;
        let (host, port) = service
            .rsplit_once(':')
            .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            .ok_or_else(|| anyhow!("VITRINE_CLUSTER_SERVICE `{service}` is not service-host:port"))?;
        let hosts: String = (0..processes).map(|i| format!("{set}-{i}.{host}:{port}\n")).collect();
        Cluster::from_hosts(processes, process, &hosts)
    }

    /// As [`Cluster::from_hostfile`], from the file's text.
    pub fn from_hosts(processes: usize, process: usize, text: &str) -> anyhow::Result<Cluster> {
        if processes < 2 {
            bail!("a cluster has at least 2 processes, got {processes}");
        }
        if process >= processes {
            bail!("process id {process} is not below the number of processes ({processes}); ids run from 0");
        }
        let addresses: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .take(processes)
            .map(str::to_owned)
            .collect();
        if addresses.len() < processes {
            bail!("{} address(es) for {processes} processes: give one host:port a line", addresses.len());
        }
        for (i, a) in addresses.iter().enumerate() {
            let port = a.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                bail!("line {} (process {i}): `{a}` is not host:port", i + 1);
            }
        }
        Ok(Cluster { process, addresses })
    }
}

/// Worker threads per process and, for a cluster, this process's place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Worker threads of this process.
    pub workers: usize,
    pub cluster: Option<Cluster>,
}

impl Shape {
    pub fn processes(&self) -> usize {
        self.cluster.as_ref().map_or(1, |c| c.addresses.len())
    }

    pub fn process(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.process)
    }

    /// Workers of the whole cluster.
    pub fn peers(&self) -> usize {
        self.workers * self.processes()
    }

    /// The cluster-wide index of this process's first worker.
    pub fn first_worker(&self) -> usize {
        self.process() * self.workers
    }

    /// One line for logs and `--dry-run`.
    pub fn describe(&self) -> String {
        match &self.cluster {
            None => format!("1 process x {} worker(s)", self.workers),
            Some(c) => format!(
                "process {} of {} x {} worker(s) (workers {}..{}), listening on {}",
                c.process,
                c.addresses.len(),
                self.workers,
                self.first_worker(),
                self.first_worker() + self.workers,
                c.addresses[c.process]
            ),
        }
    }
}

/// Where the other processes are: a hostfile, or the pods of a StatefulSet.
#[derive(Clone, Copy, Debug)]
pub enum Peers<'a> {
    None,
    Hostfile(&'a Path),
    /// This pod's name and the headless Service's `host:port`.
    StatefulSet {
        pod_name: &'a str,
        service: &'a str,
    },
}

/// Reads the cluster settings given on the command line (or their environment variables).
pub fn shape(workers: usize, processes: Option<usize>, process: Option<usize>, peers: Peers) -> anyhow::Result<Shape> {
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let cluster = match (processes.unwrap_or(1), peers) {
        (1, _) => {
            if process.is_some_and(|p| p != 0) {
                bail!("--process-id {} needs --processes (or VITRINE_PROCESSES) above 1", process.unwrap_or(0));
            }
            None
        }
        (0, _) => bail!("--processes must be at least 1"),
        (n, Peers::Hostfile(hostfile)) => Some(Cluster::from_hostfile(n, process.unwrap_or(0), hostfile)?),
        (n, Peers::StatefulSet { pod_name, service }) => {
            let cluster = Cluster::from_stateful_set(n, pod_name, service)?;
            if process.is_some_and(|p| p != cluster.process) {
                bail!("--process-id {} differs from the pod's ordinal ({pod_name}); leave it out", process.unwrap_or(0));
            }
            Some(cluster)
        }
        (n, Peers::None) => {
            return Err(anyhow!(
                "--processes {n} needs --hostfile (or VITRINE_HOSTFILE): a file with the host:port of each process, or VITRINE_CLUSTER_SERVICE in a StatefulSet"
            ))
        }
    };
    Ok(Shape { workers, cluster })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostfile_gives_every_process_its_address() {
        let c = Cluster::from_hosts(2, 1, "# the cluster\nvitrine-0.vitrine:2101\n\nvitrine-1.vitrine:2101\nextra:1\n")
            .unwrap();
        assert_eq!(c.addresses, ["vitrine-0.vitrine:2101", "vitrine-1.vitrine:2101"]);
        let shape = Shape { workers: 3, cluster: Some(c) };
        assert_eq!((shape.peers(), shape.first_worker()), (6, 3));
    }

    #[test]
    fn a_stateful_set_pod_finds_itself_and_its_peers() {
        let service = "vitrine-cluster.shop.svc.cluster.local:2101";
        let c = Cluster::from_stateful_set(3, "vitrine-2", service).unwrap();
        assert_eq!(c.process, 2);
        assert_eq!(
            c.addresses,
            [
                "vitrine-0.vitrine-cluster.shop.svc.cluster.local:2101",
                "vitrine-1.vitrine-cluster.shop.svc.cluster.local:2101",
                "vitrine-2.vitrine-cluster.shop.svc.cluster.local:2101",
            ]
        );
        let err = |r: anyhow::Result<Cluster>| format!("{:#}", r.unwrap_err());
        assert!(err(Cluster::from_stateful_set(2, "vitrine-2", service)).contains("process id 2"));
        assert!(err(Cluster::from_stateful_set(2, "laptop", service)).contains("not a StatefulSet pod"));
        assert!(err(Cluster::from_stateful_set(2, "vitrine-0", "vitrine-cluster")).contains("host:port"));
    }

    #[test]
    fn a_bad_cluster_setting_says_what_to_fix() {
        let err = |r: anyhow::Result<Cluster>| format!("{:#}", r.unwrap_err());
        assert!(err(Cluster::from_hosts(3, 0, "a:1\nb:2\n")).contains("2 address(es) for 3 processes"));
        assert!(err(Cluster::from_hosts(2, 2, "a:1\nb:2\n")).contains("process id 2"));
        assert!(err(Cluster::from_hosts(2, 0, "a:1\nb\n")).contains("`b` is not host:port"));
        let e = shape(1, Some(2), Some(0), Peers::None).unwrap_err().to_string();
        assert!(e.contains("--hostfile"), "{e}");
        assert_eq!(shape(2, None, None, Peers::None).unwrap().describe(), "1 process x 2 worker(s)");
    }
}
