use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokenwatch_common::{
    connect_flags, data_flags, direction, op, CloseEvent, ConnectEvent, DataHeader, EventHeader, EventKind,
    ProcessEvent, COMM_LEN, DATA_HEADER_LEN, EVENT_VERSION, SUN_PATH_MAX,
};

use super::{
    capture::{call_event, Tracker},
    decode::{self, Clock, Record, RecordError},
    discover::{client_inodes, parse_dump, scan_proc, socket_inode, UnixSock},
    errors::{capability_hint, kernel_error, verifier_complaint, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN},
    hooks::{self, Group, Hook, Kind},
    load::{format_has_group_dead, probe_config},
    window::{
        connections_on_demand, steps, want_capture, CaptureHint, Reason, Step, Switch, Transition, WindowInputs,
        WindowPolicy,
    },
    *,
};
use crate::{
    config::CaptureMode,
    events::{CallObserved, CallSource, ConnectObserved, GrpcStatus, Process},
    protocol::{ConnectionConfig, DecodedCall},
};

const CLOCK: Clock = Clock { realtime_minus_monotonic_ns: 1_700_000_000_000_000_000 };
const METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
const TOKEN: &str = "t1.secret-token-value";

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: test-only view of plain data as bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn fake_describe(pid: u32, comm: &str) -> Process {
    Process { pid, comm: comm.to_string(), exe: Some("/usr/bin/compute-node".into()), unit: None }
}

fn header(kind: EventKind, len: usize, ts_ns: u64) -> EventHeader {
    EventHeader { kind: kind as u16, version: EVENT_VERSION, len: len as u32, tgid: 4242, tid: 4243, ts_ns }
}

fn connect_event(ret: i32) -> ConnectEvent {
    let mut comm = [0u8; COMM_LEN];
    comm[..12].copy_from_slice(b"compute-node");
    ConnectEvent {
        header: header(EventKind::Connect, size_of::<ConnectEvent>(), 5_000_000_123),
        uid: 1000,
        gid: 1001,
        fd: 7,
        ret,
        latency_ns: 1_500,
        comm,
        flags: if ret == 0 { connect_flags::TRACKED } else { 0 },
        _pad: 0,
    }
}

/// A data record of `payload` at `stream_off` (one record per syscall).
fn data_record(dir: u8, stream_off: u64, payload: &[u8], ts_ns: u64) -> Vec<u8> {
    let head = DataHeader {
        header: header(EventKind::Data, DATA_HEADER_LEN + payload.len(), ts_ns),
        stream_off,
        fd: 7,
        uid: 1000,
        syscall_len: payload.len() as u32,
        chunk_off: 0,
        data_len: payload.len() as u32,
        direction: dir,
        op: if dir == direction::TX { op::WRITEV } else { op::READ },
        flags: data_flags::LAST,
        _pad: 0,
    };
    let mut b = bytes_of(&head);
    b.extend_from_slice(payload);
    b
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

mod capture;
mod discovery;
mod load;
mod records;
mod window;
