//! Out of file descriptors: with the open-file limit reached, the server pauses its accept loop
//! instead of spinning on a core, says so in its log, keeps serving the connections it has, and
//! accepts again once descriptors free up (issue 17, item 4).

use std::time::{Duration, Instant};

use crate::common::{ServeProcess, answering_client};

/// User plus system CPU time of a process so far (`/proc/<pid>/stat`, in clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_pauses_and_recovers() {
    // The limit leaves room for the model's files and the runtime, not for 200 connections.
    let mut server = ServeProcess::spawn(&[], "info", Some(128));
    server.ready().await;
    let (port, pid) = (server.port, server.child.id());

    // 200 connections that never speak: the server runs out of descriptors accepting them.
    let silent: Vec<std::net::TcpStream> = (0..200).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu_before, wall) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cores = (cpu_time(pid) - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(cores < 0.3, "the accept loop spins: {cores:.2} cores while out of descriptors");

    // Descriptors free up: new connections are accepted and answered again.
    drop(silent);
    let freed = Instant::now();
    while answering_client(port).await.is_none() {
        assert!(freed.elapsed() < Duration::from_secs(20), "no answer 20 s after the descriptors were freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    server.child.kill().unwrap();
    let (_, log) = server.finish();
    assert!(log.contains("accepting a connection failed"), "nothing was logged: {}", &log[log.len().saturating_sub(2000)..]);
}
