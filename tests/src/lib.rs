//! Test support for tokenwatch: the token-agent protocol, the simulator
//! (a fake token-agent and a fake compute-node client), a running agent,
//! and an OTLP receiver.

pub mod agent_proc;
pub mod otlp;
pub mod proto;
pub mod rotel;
pub mod sim;
