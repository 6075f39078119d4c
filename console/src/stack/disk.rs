//! The events volume (`logctl up --postgres-disk 2G`, as root): the events table on a
//! filesystem of its own, small enough to fill, so a drill can show what PostgreSQL running
//! out of space does to the pipeline (the consumer's breaker opens, Kafka holds the events,
//! nothing acknowledged is lost) and that storing resumes once space is freed.
//!
//! A sparse image file in PostgreSQL's folder, formatted ext4 with no blocks reserved for root
//! (PostgreSQL, not root, must be the one to find it full), loop-mounted at `postgres/events`.
//! The tablespace [`TABLESPACE`] lives there and the events table's partitions and indexes are
//! made in it; the WAL stays on the data dir's filesystem, so PostgreSQL itself stays up and
//! only the inserts fail (SQLSTATE 53100, disk full). `fill` takes the free space with a file of
//! root's (PostgreSQL cannot remove it), `free` deletes that file.

use std::path::PathBuf;
use std::process::Command;

use super::layout::Layout;
use super::process::run_checked;
use super::StackError;

/// The tablespace the events table is made in on a stack with an events volume.
pub const TABLESPACE: &str = "logctl_events";

pub struct EventsDisk {
    image: PathBuf,
    mount: PathBuf,
}

impl EventsDisk {
    pub fn new(layout: &Layout) -> Self {
        let dir = layout.component_dir("postgres");
        Self {
            image: dir.join("events-disk.img"),
            mount: dir.join("events"),
        }
    }

    /// Why this machine cannot make one, if it cannot.
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some(
                "--postgres-disk mounts a filesystem of its own and needs root; without it, \
                 PostgreSQL keeps the events on the state dir's filesystem"
                    .into(),
            );
        }
        None
    }

    /// The tablespace's folder.
    pub fn location(&self) -> PathBuf {
        self.mount.join("pgdata")
    }

    fn balloon(&self) -> PathBuf {
        self.mount.join("balloon")
    }

    pub fn is_mounted(&self) -> bool {
        let target = self.mount.display().to_string();
        std::fs::read_to_string("/proc/self/mounts")
            .map(|m| {
                m.lines()
                    .any(|l| l.split(' ').nth(1) == Some(target.as_str()))
            })
            .unwrap_or(false)
    }

    /// Makes the image (first time) and mounts it, with the tablespace's folder owned by
    /// `postgres`.
    pub fn mount(&self, bytes: u64) -> Result<(), StackError> {
        if let Some(why) = Self::unavailable() {
            return Err(StackError::Other(why));
        }
        std::fs::create_dir_all(&self.mount).map_err(|e| StackError::io(&self.mount, e))?;
        if !self.image.exists() {
            let file =
                std::fs::File::create(&self.image).map_err(|e| StackError::io(&self.image, e))?;
            file.set_len(bytes)
                .map_err(|e| StackError::io(&self.image, e))?;
            let mut mkfs = Command::new("mkfs.ext4");
            mkfs.args(["-q", "-F", "-m", "0"]).arg(&self.image);
            run_checked(mkfs, "mkfs.ext4")?;
        }
        if !self.is_mounted() {
            let mut mount = Command::new("mount");
            mount.args(["-o", "loop"]).arg(&self.image).arg(&self.mount);
            run_checked(mount, "mount the events volume")?;
        }
        let location = self.location();
        std::fs::create_dir_all(&location).map_err(|e| StackError::io(&location, e))?;
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&location);
        run_checked(chown, "chown the tablespace folder")?;
        let mut chmod = Command::new("chmod");
        chmod.arg("700").arg(&location);
        run_checked(chmod, "chmod the tablespace folder").map(drop)
    }

    /// Unmounts it (once PostgreSQL is stopped); the image stays for the next `up`.
    pub fn unmount(&self) -> Result<(), StackError> {
        if !self.is_mounted() {
            return Ok(());
        }
        let mut umount = Command::new("umount");
        umount.arg(&self.mount);
        if run_checked(umount, "umount the events volume").is_err() {
            // Busy (a shell in it): detach it now, the kernel finishes when it is let go.
            let mut lazy = Command::new("umount");
            lazy.arg("-l").arg(&self.mount);
            run_checked(lazy, "umount -l the events volume")?;
        }
        Ok(())
    }

    /// Bytes free on it.
    pub fn available(&self) -> Result<u64, StackError> {
        let mut df = Command::new("df");
        df.args(["-B1", "--output=avail"]).arg(&self.mount);
        let out = run_checked(df, "df")?;
        out.lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .next()
            .ok_or_else(|| StackError::Other(format!("df gave no free space: {out}")))
    }

    /// Takes every free byte; returns how many it took.
    pub fn fill(&self) -> Result<u64, StackError> {
        self.require_mounted()?;
        std::fs::write(self.balloon(), b"").map_err(|e| StackError::io(&self.balloon(), e))?;
        let mut taken = 0;
        // fallocate may fall short of what df said (the filesystem's own blocks for the file)
        // and keeps what it got: go on until nothing is left.
        for i in 0..8 {
            let free = self.available()?;
            if free < 4096 {
                break;
            }
            let part = self.mount.join(format!("balloon.{i}"));
            let mut fallocate = Command::new("fallocate");
            fallocate.args(["-l", &free.to_string()]).arg(&part);
            let _ = run_checked(fallocate, "fallocate");
            taken += std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        }
        Ok(taken)
    }

    /// Deletes what `fill` took; returns the bytes freed.
    pub fn free(&self) -> Result<u64, StackError> {
        self.require_mounted()?;
        let mut freed = 0;
        let entries = std::fs::read_dir(&self.mount).map_err(|e| StackError::io(&self.mount, e))?;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("balloon") {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path()).map_err(|err| StackError::io(&e.path(), err))?;
            }
        }
        Ok(freed)
    }

    /// Whether `fill` took the space and `free` has not given it back.
    pub fn is_full(&self) -> bool {
        self.balloon().exists()
    }

    fn require_mounted(&self) -> Result<(), StackError> {
        if self.is_mounted() {
            Ok(())
        } else {
            Err(StackError::Other(
                "this stack has no events volume: `logctl down`, then `logctl up \
                 --postgres-disk 2G` (as root) on a new state dir"
                    .into(),
            ))
        }
    }
}
