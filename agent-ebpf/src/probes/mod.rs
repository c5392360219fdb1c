//! One module per hook family; `args` abstracts over the two hook kinds
//! (syscall tracepoints, fentry/fexit on the syscall wrappers).
pub mod args;
pub mod connect;
pub mod io;
pub mod process;
