//! The only place with `unsafe` and `libc`: file descriptors, processes,
//! signals. Every other module stays safe.

#[macro_use]
mod syscall;
mod fd;
mod pre_exec;
mod process;
mod pty;
pub mod stacks;
mod zygote;

pub use fd::{
    dup_cloexec, move_stdio_aside, pipe_cloexec, poll_many, poll_readable, read, set_nonblocking,
    shutdown_write, socketpair_cloexec, write_all_blocking, write_all_deadline, writev,
};
pub use pre_exec::PreExec;
pub use process::{effective_uid, ignore_sigpipe, kill, pidfd_open, reap};
pub use pty::{controlling_tty_on_exec, openpty_raw};
pub use zygote::{
    auto_reap_children, dup_onto, fork_single_threaded, null_onto, recv_with_fds, send_with_fds,
    seqpacket_pair, set_process_name, thread_count, wait_all_children, Forked,
};
mod setns;
pub use setns::{
    exists_in_root, is_procfs_in_root, read_in_root, Credentials, Entry, Leader, Namespace,
};
