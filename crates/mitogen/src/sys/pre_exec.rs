//! A step run in a new process between `fork` and `exec`.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// A step run in the child between `fork` and `exec` (entering a
/// container's namespaces, changing user). Only code in `sys` builds one,
/// because it must be async-signal-safe: no allocation, no locks, only
/// system calls on values prepared before the fork.
pub struct PreExec(Box<dyn FnMut() -> std::io::Result<()> + Send + Sync + 'static>);

impl PreExec {
    /// A step running `f`.
    ///
    /// # Safety
    /// `f` runs in a forked copy of a multithreaded process: it must only
    /// make async-signal-safe calls (no allocation, no locks, no
    /// `println!`), on data prepared before the fork.
    #[allow(dead_code)] // used by the setns method
    pub unsafe fn new(f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static) -> PreExec {
        PreExec(Box::new(f))
    }

    /// Have `cmd` run this step after its own setup, just before `exec`.
    pub fn install(self, cmd: &mut Command) {
        // SAFETY: `PreExec::new`'s contract is the one `pre_exec` asks for.
        unsafe {
            cmd.pre_exec(self.0);
        }
    }
}
