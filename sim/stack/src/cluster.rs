//! A cluster of enclaves in simulation (SPEC §16, cluster): N enclave/parent pairs sharing the
//! stack's KMS key, image and sim CA, founded as one cluster through the parents' admin routes,
//! behind HAProxy (Debian's package) on the usual address.
//!
//! HAProxy, because it is in Debian, health-checks backends actively (`GET /readyz` every
//! 500 ms; nginx's open-source build only notices failures passively) and routes by a header
//! through a map file: `X-Signer-Route` (the cluster id) picks the cluster's backend, so more
//! clusters are more lines in the map. Within a cluster any member will do: a member that is not
//! the leader forwards decisions to the leader's parent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::StackError;
use crate::client::Api;
use crate::process::{Proc, wait_until};
use crate::stack::{Stack, free_port};

/// One enclave/parent pair.
pub struct Member {
    pub name: String,
    pub socket: PathBuf,
    pub http_addr: SocketAddr,
    /// Where this member's parent receives member traffic, as announced in its card (the parent
    /// itself, or a nemesis in front of it).
    pub relay: String,
    pub enclave: Option<Proc>,
    pub parent: Proc,
    /// API token.
    pub api: Api,
    /// Admin token.
    pub admin: Api,
    /// The enclave instance now serving (a restart is a new instance).
    pub enclave_id: String,
}

/// `n` free addresses on 127.0.0.1 for members' parents, distinct from each other and from
/// `taken` (ports picked for other daemons but not bound yet).
pub fn member_addrs(n: usize, taken: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    while addrs.len() < n {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        if addr.port() != 0 && !addrs.contains(&addr) && !taken.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// A running cluster.
pub struct Cluster {
    pub members: Vec<Member>,
    pub cluster_id: String,
    pub lb: Option<Proc>,
    pub lb_addr: Option<SocketAddr>,
}

fn failed(what: &str, r: &Result<crate::client::Reply, String>) -> StackError {
    let detail = match r {
        Ok(reply) => format!("{} {}", reply.status, reply.body),
        Err(e) => e.clone(),
    };
    StackError::Setup(format!("{what}: {detail}"))
}

impl Stack {
    /// Starts a member on each of `addrs` (its parent's HTTP address) and founds them as one
    /// cluster; member `i` announces `relays[i]` (its parent's address, or a nemesis in front
    /// of it; by default the parent itself).
    pub fn start_cluster(
        &self,
        addrs: &[SocketAddr],
        relays: Option<&[String]>,
    ) -> Result<Cluster, StackError> {
        let mut members = Vec::new();
        for (i, http_addr) in addrs.iter().copied().enumerate() {
            let name = format!("member{i}");
            let (enclave, parent, api) = self.spawn_instance(&name, http_addr)?;
            let admin = api.with_token(&self.admin_token);
            members.push(Member {
                socket: self.paths.root.join(format!("run/{name}.sock")),
                relay: relays
                    .and_then(|r| r.get(i).cloned())
                    .unwrap_or_else(|| format!("http://{http_addr}")),
                name,
                http_addr,
                enclave: Some(enclave),
                parent,
                api,
                admin,
                enclave_id: String::new(),
            });
        }
        let mut cards = Vec::new();
        for m in &mut members {
            let (card, id) = m.card()?;
            m.enclave_id = id;
            cards.push(json!({"card": card, "relay": m.relay}));
        }
        let mut cluster_id = String::new();
        for m in &members {
            let r = m.admin.post("/v1/admin/cluster/found", &json!({ "founders": cards }));
            match &r {
                Ok(reply) if reply.status == 200 => cluster_id = reply.str("cluster_id"),
                _ => return Err(failed(&format!("founding the cluster on {}", m.name), &r)),
            }
        }
        let cluster = Cluster { members, cluster_id, lb: None, lb_addr: None };
        cluster.wait_leader(Duration::from_secs(30))?;
        // Every member's parent learns the leader on its own refresh (every 250 ms): until it
        // has, a decision reaching a follower is refused rather than forwarded.
        let start = Instant::now();
        while !cluster.members.iter().all(|m| m.api.get("/readyz").is_ok_and(|r| r.status == 200)) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(StackError::Timeout {
                    what: "every member to know the leader".into(),
                    log: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// HAProxy on `addr` in front of the cluster's parents (config in the data directory).
    pub fn start_load_balancer(
        &self,
        cluster: &mut Cluster,
        addr: SocketAddr,
    ) -> Result<(), StackError> {
        let config = self.paths.root.join("haproxy.cfg");
        let map = self.paths.root.join("routes.map");
        std::fs::write(&map, format!("{} cluster\n", cluster.cluster_id))
            .map_err(|e| StackError::Setup(format!("{}: {e}", map.display())))?;
        std::fs::write(&config, haproxy_config(cluster, addr, &map))
            .map_err(|e| StackError::Setup(format!("{}: {e}", config.display())))?;
        let binary = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("haproxy"));
        let mut command = Command::new(binary);
        command.arg("-db").arg("-f").arg(&config);
        let mut lb = Proc::spawn("haproxy", command, &self.paths.logs.join("haproxy.log"))?;
        let api = Api::new(format!("http://{addr}"), self.api_token.clone());
        wait_until(&mut lb, Duration::from_secs(30), "the load balancer to be ready", || {
            api.get("/readyz").is_ok_and(|r| {
                r.status == 200 && r.body.get("ready").and_then(Value::as_bool) == Some(true)
            })
        })?;
        cluster.lb = Some(lb);
        cluster.lb_addr = Some(addr);
        Ok(())
    }
}

/// The HAProxy configuration for `cluster` on `addr`: route by `X-Signer-Route` through `map`
/// (cluster id → backend), health by `/readyz`, a request whose server is down sent to another.
pub fn haproxy_config(cluster: &Cluster, addr: SocketAddr, map: &std::path::Path) -> String {
    let mut servers = String::new();
    for m in &cluster.members {
        servers.push_str(&format!("    server {} {} check\n", m.name, m.http_addr));
    }
    format!(
        "# Generated by signer-sim: HAProxy in front of one cluster of enclave/parent pairs.\n\
         global\n    maxconn 4096\n\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    \
         timeout server 60s\n    option redispatch\n    retries 2\n\n\
         frontend signer\n    bind {addr}\n    \
         # The record's cluster picks the backend; requests without the header go to the \
         default.\n    \
         use_backend %[req.hdr(x-signer-route),lower,map({map},cluster)]\n    \
         default_backend cluster\n\n\
         backend cluster\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    default-server inter 500ms fall 2 rise 1\n{servers}",
        map = map.display()
    )
}

impl Member {
    /// A fresh card from this member's enclave (its parent asks it), and its enclave id.
    pub fn card(&self) -> Result<(String, String), StackError> {
        let r = self.admin.post("/v1/admin/cluster/card", &json!({ "relay": self.relay }));
        match &r {
            Ok(reply) if reply.status == 200 => Ok((reply.str("card"), reply.str("enclave_id"))),
            _ => Err(failed(&format!("the card of {}", self.name), &r)),
        }
    }

    /// This member's view of the cluster (`GET /v1/cluster`).
    pub fn status(&self) -> Option<Value> {
        self.api.get("/v1/cluster").ok().filter(|r| r.status == 200).map(|r| r.body)
    }
}

impl Cluster {
    /// The member whose enclave leads and has applied the cluster's genesis, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.enclave.is_some()
                && m.status().is_some_and(|s| {
                    s.get("role").and_then(Value::as_str) == Some("leader")
                        && s.get("ready").and_then(Value::as_bool) == Some(true)
                })
        })
    }

    pub fn wait_leader(&self, timeout: Duration) -> Result<usize, StackError> {
        let start = Instant::now();
        loop {
            if let Some(i) = self.leader() {
                return Ok(i);
            }
            if start.elapsed() > timeout {
                return Err(StackError::Timeout {
                    what: "a cluster leader".into(),
                    log: self
                        .members
                        .iter()
                        .map(|m| format!("{}: {:?}", m.name, m.status()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to member `i`'s enclave (a crash); its parent stays.
    pub fn kill_enclave(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i)
            && let Some(mut p) = m.enclave.take()
        {
            p.kill();
        }
    }

    /// Member `i`'s enclave restarted: a fresh instance (a new member) on the same socket and
    /// parent, admitted by the leader in place of the dead one.
    pub fn replace(&mut self, stack: &Stack, i: usize) -> Result<(), StackError> {
        self.replace_with(stack, i, &stack.paths.enclave_config)
    }

    /// One step of a rolling upgrade, on member `i`'s host: its enclave and parent stop; an
    /// enclave of the image `config` measures (`measurements`) and a parent expecting that image
    /// take their place; the leader admits the new enclave in place of the old one (only if KMS
    /// vouches for the new image).
    pub fn upgrade(
        &mut self,
        stack: &Stack,
        i: usize,
        config: &std::path::Path,
        measurements: &std::path::Path,
    ) -> Result<(), StackError> {
        self.kill_enclave(i);
        let Some(member) = self.members.get_mut(i) else {
            return Err(StackError::Setup(format!("no member {i}")));
        };
        member.parent.stop(Duration::from_secs(15));
        let name = format!("{}-upgraded-{}", member.name, unix_millis());
        member.parent =
            stack.spawn_parent_expecting(&member.socket, member.http_addr, &name, measurements)?;
        self.replace_with(stack, i, config)
    }

    /// [`Cluster::replace`] with an enclave of the image `config` measures.
    pub fn replace_with(
        &mut self,
        stack: &Stack,
        i: usize,
        config: &std::path::Path,
    ) -> Result<(), StackError> {
        let leader = self.wait_leader(Duration::from_secs(30))?;
        let Some(dead) = self.members.get(i).map(|m| m.enclave_id.clone()) else {
            return Err(StackError::Setup(format!("no member {i}")));
        };
        let socket = self.members.get(i).map(|m| m.socket.clone()).unwrap_or_default();
        let _ = std::fs::remove_file(&socket);
        // Each instance its own log, named by when it started.
        let name = format!("member{i}-{}", unix_millis());
        let enclave = stack.spawn_enclave(&socket, config, &name)?;
        let mut others = Vec::new();
        for (j, m) in self.members.iter().enumerate() {
            if j != i && m.enclave.is_some() {
                let (card, _) = m.card()?;
                others.push(json!({"card": card, "relay": m.relay}));
            }
        }
        let Some(member) = self.members.get_mut(i) else {
            return Err(StackError::Setup(format!("no member {i}")));
        };
        member.enclave = Some(enclave);
        // The parent reconnects to the new enclave on its own; wait until it answers.
        let admin = member.admin.clone();
        let start = Instant::now();
        let (card, id) = loop {
            match member.card() {
                Ok(card) => break card,
                Err(e) if start.elapsed() > Duration::from_secs(30) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let relay = member.relay.clone();
        let r = admin.post(
            "/v1/admin/cluster/join",
            &json!({"cluster_id": self.cluster_id, "members": others}),
        );
        if !r.as_ref().is_ok_and(|r| r.status == 200) {
            return Err(failed("joining the cluster", &r));
        }
        let Some(leader) = self.members.get(leader) else {
            return Err(StackError::Setup("the leader left".into()));
        };
        let r = leader.admin.post(
            "/v1/admin/cluster/admit",
            &json!({"card": card, "relay": relay, "replacing": dead}),
        );
        if !r.as_ref().is_ok_and(|r| r.status == 200) {
            // The member it was to replace is still the one the membership names.
            return Err(failed("admitting the new member", &r));
        }
        if let Some(member) = self.members.get_mut(i) {
            member.enclave_id = id;
        }
        Ok(())
    }

    /// Stops everything (load balancer, parents, enclaves).
    pub fn shutdown(mut self) {
        if let Some(mut lb) = self.lb.take() {
            lb.kill();
        }
        for m in &mut self.members {
            m.parent.kill();
            if let Some(mut e) = m.enclave.take() {
                e.kill();
            }
        }
    }
}
