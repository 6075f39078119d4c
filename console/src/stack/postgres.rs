//! PostgreSQL from Debian's packages, in the stack's own data dir.
//!
//! `initdb` refuses to run as root, so when logctl runs as root every PostgreSQL command runs
//! as the `postgres` user (`runuser`), and the data dir is owned by it. The server listens on
//! 127.0.0.1 and on a private socket dir, so it never clashes with Debian's own cluster.
//! Local socket connections trust the `postgres` superuser (only root and `postgres` can reach
//! that dir); TCP connections need scram passwords, like the `loguser` role the services use.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::layout::{Layout, Ports};
use super::process::{self, run_checked};
use super::StackError;

pub const DATABASE: &str = "logprocessor";
pub const USER: &str = "loguser";
pub const PASSWORD_SECRET: &str = "postgres-password";

pub struct Postgres {
    bindir: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    run_as_postgres: bool,
}

impl Postgres {
    pub fn new(layout: &Layout) -> Result<Self, StackError> {
        Ok(Self {
            bindir: find_bindir()?,
            dir: layout.component_dir("postgres"),
            log: layout.log_file("postgres"),
            run_as_postgres: nix::unistd::geteuid().is_root(),
        })
    }

    /// The marker that identifies our postmaster: its data dir.
    pub fn marker(layout: &Layout) -> String {
        layout
            .component_dir("postgres")
            .join("data")
            .display()
            .to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// A PostgreSQL program, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        self.command_niced(program, 0)
    }

    /// A PostgreSQL program run `nice` steps below our CPU priority, it and every process it
    /// starts: `pg_ctl start` with it, the postmaster and each backend it forks.
    fn command_niced(&self, program: &str, nice: u8) -> Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if nice > 0 {
            argv.extend([
                "nice".into(),
                format!("--adjustment={}", nice.min(19)).into(),
            ]);
        }
        if self.run_as_postgres {
            argv.extend(["runuser", "-u", "postgres", "--"].map(Into::into));
        }
        argv.push(self.bindir.join(program).into());
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// Initializes (first time), starts and waits for the server, then makes sure the
    /// `loguser` role (with the stack's password) and the `logprocessor` database exist.
    /// On a stack on hosts it listens on its host's address and lets the hosts' network in
    /// (`clients`, a CIDR), with the same scram passwords.
    pub fn start(
        &self,
        layout: &Layout,
        ports: &Ports,
        listen: std::net::Ipv4Addr,
        clients: Option<&str>,
        password: &str,
        nice: u8,
    ) -> Result<u32, StackError> {
        self.prepare_dirs()?;
        if !self.data().join("PG_VERSION").exists() {
            let mut initdb = self.command("initdb");
            initdb
                .arg("-D")
                .arg(self.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .args(["-E", "UTF8", "--locale=C", "--no-instructions"]);
            run_checked(initdb, "initdb")?;
        }
        if let Some(cidr) = clients {
            self.allow_clients(cidr)?;
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses={listen} -c max_connections=100",
            ports.postgres,
            self.socket_dir().display()
        );
        let mut pg_ctl = self.command_niced("pg_ctl", nice);
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        run_checked(pg_ctl, "pg_ctl start")?;
        let pid = process::read_pid(&self.data().join("postmaster.pid")).ok_or_else(|| {
            StackError::Other("PostgreSQL started but wrote no postmaster.pid".into())
        })?;
        let pid_file = layout.pid_file("postgres");
        std::fs::write(&pid_file, format!("{pid}\n")).map_err(|e| StackError::io(&pid_file, e))?;
        self.ensure_role_and_database(ports.postgres, password)?;
        Ok(pid)
    }

    /// Makes the events volume's tablespace at `location`, owned by the services' role, once.
    pub fn ensure_tablespace(&self, port: u16, location: &Path) -> Result<(), StackError> {
        let ts = super::disk::TABLESPACE;
        let exists = self.psql(
            port,
            &format!("SELECT count(*) FROM pg_tablespace WHERE spcname = '{ts}'"),
        )?;
        if exists == "0" {
            self.psql(
                port,
                &format!(
                    "CREATE TABLESPACE {ts} OWNER {USER} LOCATION '{}'",
                    location.display()
                ),
            )?;
        }
        Ok(())
    }

    /// Adds a scram line for `cidr` to pg_hba.conf, once.
    fn allow_clients(&self, cidr: &str) -> Result<(), StackError> {
        let hba = self.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(|e| StackError::io(&hba, e))?;
        let line = format!("host all all {cidr} scram-sha-256");
        if !text.lines().any(|l| l.trim() == line) {
            std::fs::write(
                &hba,
                format!("{text}\n# the stack's hosts (logctl up --hosts)\n{line}\n"),
            )
            .map_err(|e| StackError::io(&hba, e))?;
        }
        Ok(())
    }

    pub fn stop(&self) -> Result<(), StackError> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run_checked(pg_ctl, "pg_ctl stop").map(|_| ())
    }

    fn prepare_dirs(&self) -> Result<(), StackError> {
        use std::os::unix::fs::PermissionsExt;
        for d in [self.dir.clone(), self.data(), self.socket_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| StackError::io(&d, e))?;
        }
        if !self.log.exists() {
            std::fs::write(&self.log, "").map_err(|e| StackError::io(&self.log, e))?;
        }
        std::fs::set_permissions(self.data(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StackError::io(&self.data(), e))?;
        if self.run_as_postgres {
            for p in [&self.dir, &self.log] {
                let mut chown = Command::new("chown");
                chown.arg("-R").arg("postgres:postgres").arg(p);
                run_checked(chown, "chown to postgres")?;
            }
            let mut probe = Command::new("runuser");
            probe
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(self.data());
            if run_checked(probe, "access check").is_err() {
                return Err(StackError::Other(format!(
                    "the postgres user cannot reach {}: a parent folder is closed to other users. \
                     Use a state dir it can reach (--state-dir /var/tmp/logctl) or open the parents \
                     with chmod o+x",
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    fn psql(&self, port: u16, sql: &str) -> Result<String, StackError> {
        let mut psql = self.command("psql");
        psql.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql]);
        run_checked(psql, "psql").map(|s| s.trim().to_owned())
    }

    fn ensure_role_and_database(&self, port: u16, password: &str) -> Result<(), StackError> {
        // The password is generated alphanumeric, so it is safe inside a SQL literal.
        let verb = if self.psql(
            port,
            &format!("SELECT 1 FROM pg_roles WHERE rolname = '{USER}'"),
        )? == "1"
        {
            "ALTER"
        } else {
            "CREATE"
        };
        self.psql(
            port,
            &format!("{verb} ROLE {USER} LOGIN PASSWORD '{password}'"),
        )?;
        if self.psql(
            port,
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
        )? != "1"
        {
            self.psql(port, &format!("CREATE DATABASE {DATABASE} OWNER {USER}"))?;
        }
        Ok(())
    }
}

/// The URL the services use (TCP, password auth).
pub fn database_url(at: std::net::SocketAddr, password: &str) -> String {
    format!("postgres://{USER}:{password}@{at}/{DATABASE}")
}

/// Debian keeps `initdb` and `pg_ctl` off PATH, in a versioned folder; take the newest.
fn find_bindir() -> Result<PathBuf, StackError> {
    if let Some(dir) = std::env::var_os("LOGCTL_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Ok(bin);
    }
    if let Some(initdb) = process::which("initdb") {
        return Ok(initdb.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    Err(StackError::Missing {
        what: "PostgreSQL server (initdb, pg_ctl)".into(),
        hint: "run scripts/bootstrap (or apt-get install postgresql), or set LOGCTL_PG_BINDIR"
            .into(),
    })
}
