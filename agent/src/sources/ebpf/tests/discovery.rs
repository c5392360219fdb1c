//! sock_diag and /proc discovery of open connections.
use super::*;

fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(body);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

fn diag_msg(kind: u8, state: u8, inode: u32, name: Option<&[u8]>, peer: Option<u32>) -> Vec<u8> {
    let mut b = vec![libc::AF_UNIX as u8, kind, state, 0];
    b.extend_from_slice(&inode.to_ne_bytes());
    b.extend_from_slice(&[0; 8]);
    let mut attr = |t: u16, data: &[u8]| {
        b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(data);
        while b.len() % 4 != 0 {
            b.push(0);
        }
    };
    if let Some(n) = name {
        attr(0, n);
    }
    if let Some(p) = peer {
        attr(2, &p.to_ne_bytes());
    }
    b
}

#[test]
fn sock_diag_dump_finds_the_clients_of_the_watched_socket() {
    let path = b"/run/ta.sock";
    let stream = libc::SOCK_STREAM as u8;
    let mut dump = Vec::new();
    dump.extend(nlmsg(20, &diag_msg(stream, 10, 100, Some(path), None))); // the listener
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 101, Some(b"/run/ta.sock\0"), Some(201)))); // accepted
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 201, None, Some(101)))); // its client
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 102, Some(b"/run/other.sock"), Some(202)))); // another server
    dump.extend(nlmsg(20, &diag_msg(libc::SOCK_DGRAM as u8, 1, 103, Some(path), Some(203)))); // not a stream
    let mut socks = Vec::new();
    assert!(!parse_dump(&dump, &mut socks).unwrap());
    assert_eq!(socks.len(), 4);
    assert_eq!(socks[1], UnixSock { inode: 101, state: 1, name: Some(path.to_vec()), peer: Some(201) });
    assert!(parse_dump(&nlmsg(3, &[0; 4]), &mut socks).unwrap(), "NLMSG_DONE ends the dump");
    assert_eq!(client_inodes(&socks, |n| n == path), HashSet::from([201]));
    let err = parse_dump(&nlmsg(2, &(-libc::EPERM).to_ne_bytes()), &mut socks).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert!(
        parse_dump(&[40, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut socks).is_err(),
        "length past the end"
    );
}

#[test]
fn proc_scan_maps_inodes_to_processes() {
    let root = tempfile::tempdir().unwrap();
    let link = |pid: &str, fd: &str, target: &str| {
        let dir = root.path().join(pid).join("fd");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(target, dir.join(fd)).unwrap();
    };
    link("10", "3", "socket:[201]");
    link("10", "4", "socket:[999]");
    link("11", "7", "socket:[201]"); // inherited by a child: both tracked
    link("12", "5", "/dev/null");
    link("13", "6", "socket:[202]"); // the agent itself
    std::fs::create_dir_all(root.path().join("self")).unwrap();
    let found = scan_proc(root.path(), &HashSet::from([201, 202]), 13);
    let pairs: Vec<_> = found.iter().map(|f| (f.pid, f.fd, f.inode)).collect();
    assert_eq!(pairs, [(10, 3, 201), (11, 7, 201)]);
    assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
    assert_eq!(socket_inode(b"pipe:[12345]"), None);
    assert_eq!(socket_inode(b"socket:[x]"), None);
}

#[test]
fn discovery_of_a_real_socket_pair_works() {
    // This process is excluded, so a child holds the client end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ta.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.fileno(), flush=True); time.sleep(30)"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_server, _) = listener.accept().unwrap();
    let mut line = String::new();
    io::BufRead::read_line(&mut io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let found = discover::discover(&path, std::process::id());
    let _ = child.kill();
    let _ = child.wait();
    let found = found.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].pid, found[0].fd), (child.id(), line.trim().parse::<i32>().unwrap()));
}
