//! `ferry tui` in a real terminal: tmux runs it in a 100x30 pane against a
//! `ferry serve`, keys are typed with `send-keys`, the screen is read with
//! `capture-pane`. Skipped, saying so, where tmux is not installed (CI
//! installs it).

mod common;

use common::{wait_until, Proc, Serve, FERRY};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed when dropped, even
/// when the test fails.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A tmux server of its own (named `socket`) running `command` in a
    /// detached session `ferry`, `columns` wide and 30 lines high.
    fn start(socket: String, columns: u16, command: &str) -> Tmux {
        let tmux = Tmux { socket };
        let columns = columns.to_string();
        let started = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "ferry",
            "-x",
            &columns,
            "-y",
            "30",
            command,
        ]);
        assert!(started.status.success(), "{started:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// The pane's text as shown now.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "ferry"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`, and returns it.
    fn wait_for(&self, text: &str) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(&format!("{text:?} on screen"), || {
                last = self.screen();
                last.contains(text).then(|| last.clone())
            })
        }));
        found.unwrap_or_else(|_| panic!("{text:?} never showed; the screen:\n{last}"))
    }

    fn type_line(&self, line: &str) {
        assert!(self
            .run(&["send-keys", "-t", "ferry", "-l", line])
            .status
            .success());
        assert!(self
            .run(&["send-keys", "-t", "ferry", "Enter"])
            .status
            .success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A script for the pane: the TUI, then the terminal's settings and its
/// exit status, for the test to check that the terminal was restored.
fn script(dir: &Path, addr: &str) -> String {
    let path = dir.join("run.sh");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "FERRY_STATE_DIR='{}' '{FERRY}' tui --trust-new-server {addr} --name alice --files-dir '{}'\n\
         status=$?\n\
         stty -a > '{}'\n\
         echo \"ferry exited $status\"\n\
         sleep 60",
        common::state_dir().display(),
        dir.join("received").display(),
        dir.join("stty.txt").display(),
    )
    .unwrap();
    format!("sh '{}'", path.display())
}

#[test]
fn the_tui_chats_in_a_real_terminal_and_restores_it() {
    if !tmux_installed() {
        println!("SKIP: tmux is not installed (.ci/run installs it)");
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(inbox.path(), &[]);
    let tmux = Tmux::start(
        format!("ferry-tui-test-{}", std::process::id()),
        100,
        &script(dir.path(), &server.addr()),
    );

    let screen = tmux.wait_for("● connected");
    assert!(screen.contains("alice (you)"), "{screen}");
    assert!(screen.contains("/send PATH [NAME]"), "{screen}");

    tmux.type_line("hello from the terminal");
    tmux.wait_for("<alice> hello from the terminal");

    // Someone else in the room, from a script.
    let mut bob = Proc::spawn(&["chat", &server.addr(), "--name", "bob"]);
    bob.expect(&["you are bob"]);
    let stdin = bob.child.stdin.as_mut().unwrap();
    stdin.write_all(b"hi alice, from a pipe\n").unwrap();
    let screen = tmux.wait_for("<bob> hi alice, from a pipe");
    assert!(screen.contains("Users (2)"), "{screen}");
    // The capture shown in README.md comes from here.
    println!("{screen}");
    let (ok, _, err) = bob.finish();
    assert!(ok, "{err}");
    tmux.wait_for("bob left");

    // A folder, sent whole to the server's inbox (walked off the UI thread).
    let folder = dir.path().join("photos");
    std::fs::create_dir_all(folder.join("2024")).unwrap();
    std::fs::write(folder.join("2024/a.jpg"), common::contents(70_000, 3)).unwrap();
    std::fs::write(folder.join("notes.txt"), b"from the terminal\n").unwrap();
    tmux.type_line(&format!("/send {}", folder.display()));
    common::wait_until("the folder in the inbox", || {
        std::fs::read(inbox.path().join("photos/notes.txt")).ok()
    });
    assert_eq!(
        std::fs::read(inbox.path().join("photos/2024/a.jpg")).unwrap(),
        common::contents(70_000, 3)
    );

    // A folder a member sends alice is asked about like a file: Ctrl-Y
    // takes it into her receiving folder, Ctrl-N refuses the next one.
    let send_to_alice = |folder: &Path| {
        Proc::spawn(&[
            "send",
            "--to",
            "alice",
            "--name",
            "bob",
            &server.addr(),
            folder.to_str().unwrap(),
        ])
    };
    let bob = send_to_alice(&folder);
    tmux.wait_for("bob offers photos/ (2 files, 68.4 KiB): Ctrl-Y accepts");
    tmux.run(&["send-keys", "-t", "ferry", "C-y"]);
    let (ok, _, err) = bob.finish();
    assert!(ok, "{err}");
    let received = dir.path().join("received");
    assert_eq!(
        std::fs::read(received.join("photos/2024/a.jpg")).unwrap(),
        common::contents(70_000, 3)
    );
    assert_eq!(
        std::fs::read(received.join("photos/notes.txt")).unwrap(),
        b"from the terminal\n"
    );
    let drafts = dir.path().join("drafts");
    std::fs::create_dir_all(drafts.join("empty")).unwrap();
    std::fs::write(drafts.join("draft.txt"), b"not wanted\n").unwrap();
    let bob = send_to_alice(&drafts);
    tmux.wait_for("bob offers drafts/ (1 file, 11 B): Ctrl-Y accepts");
    tmux.run(&["send-keys", "-t", "ferry", "C-n"]);
    let (ok, _, err) = bob.finish();
    assert!(!ok, "a refused folder is a failed send");
    assert!(err.contains("declined by the user"), "{err}");
    let names = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&received),
        [".ferry-partial", "photos"],
        "nothing of the refused folder was written"
    );
    assert!(names(&received.join(".ferry-partial")).is_empty());

    tmux.type_line("/quit");
    let screen = tmux.wait_for("ferry exited 0");
    // Off the alternate screen: the UI is gone, the shell's lines are back.
    assert!(!screen.contains("Users ("), "{screen}");
    let stty = std::fs::read_to_string(dir.path().join("stty.txt")).unwrap();
    let words: Vec<&str> = stty.split_whitespace().collect();
    for setting in ["icanon", "echo", "isig"] {
        assert!(
            words.contains(&setting),
            "{setting} is off after exit: {stty}"
        );
    }
}

/// `ferry tui` for `alice` in a tmux session of its own (the pane runs
/// [`script`]), connected to `addr` or trying to: the tmux server and the
/// pid of the `ferry tui` process.
fn tui_in_tmux(name: &str, dir: &Path, addr: &str) -> (Tmux, u32) {
    let tmux = Tmux::start(
        format!("ferry-tui-test-{}-{name}", std::process::id()),
        100,
        &script(dir, addr),
    );
    // The one process whose arguments are `tui` and this test's folder.
    let marker = dir.join("received").display().to_string();
    let pid = wait_until("the ferry tui process", || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                let has = |arg: &str| args.contains(&arg.as_bytes());
                (has("tui") && has(&marker)).then_some(pid)
            })
    });
    (tmux, pid)
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat_fields(&stat).first() != Some(&"Z"))
}

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces): the state first.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// CPU time (user and system) `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields = stat_fields(&stat);
    // utime and stime: fields 14 and 15 of the whole line.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// How long `pid` takes to go, failing past `EXIT_WITHIN`.
fn wait_gone(pid: u32, what: &str) -> Duration {
    let start = Instant::now();
    while running(pid) {
        assert!(
            start.elapsed() < EXIT_WITHIN,
            "ferry tui still runs {EXIT_WITHIN:?} after {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    println!("ferry tui gone {took:?} after {what}");
    took
}

/// How long `ferry tui` may take to leave.
const EXIT_WITHIN: Duration = Duration::from_secs(3);

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The server stopped under a connected TUI: it shows the failed attempts
/// and waits out its backoff, using (next to) no processor meanwhile.
fn stop_server_and_check_it_waits_idle(server: &mut Serve, tmux: &Tmux, pid: u32) {
    server.terminate();
    tmux.wait_for("cannot connect to");
    let before = cpu_ticks(pid);
    let idle = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second() as f64;
    let share = used / idle.elapsed().as_secs_f64();
    println!(
        "ferry tui used {:.1} % of a core while reconnecting",
        share * 100.0
    );
    assert!(
        share < 0.10,
        "ferry tui spins: {:.0} % of a core",
        share * 100.0
    );
}

/// The pane's terminal after `ferry tui` left: put back as it was.
fn assert_terminal_restored(tmux: &Tmux, dir: &Path) {
    let screen = tmux.wait_for("ferry exited 0");
    assert!(!screen.contains("Users ("), "{screen}");
    let stty = std::fs::read_to_string(dir.join("stty.txt")).unwrap();
    let words: Vec<&str> = stty.split_whitespace().collect();
    for setting in ["icanon", "echo", "isig"] {
        assert!(
            words.contains(&setting),
            "{setting} is off after exit: {stty}"
        );
    }
}

/// Its tmux session killed (as when an SSH link drops), a connected TUI
/// says goodbye and leaves; one waiting to reconnect leaves too, and never
/// spins while it waits.
#[test]
fn the_tui_exits_when_its_terminal_goes_away() {
    if !tmux_installed() {
        println!("SKIP: tmux is not installed (.ci/run installs it)");
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &[]);

    let dir = tempfile::tempdir().unwrap();
    let (tmux, pid) = tui_in_tmux("hangup-connected", dir.path(), &server.addr());
    tmux.wait_for("● connected");
    let _ = tmux.run(&["kill-session", "-t", "ferry"]);
    wait_gone(pid, "its session was killed, connected");
    server.expect(&["\"alice\"", "said goodbye"]);

    let dir = tempfile::tempdir().unwrap();
    let (tmux, pid) = tui_in_tmux("hangup-reconnecting", dir.path(), &server.addr());
    tmux.wait_for("● connected");
    stop_server_and_check_it_waits_idle(&mut server, &tmux, pid);
    let _ = tmux.run(&["kill-session", "-t", "ferry"]);
    wait_gone(pid, "its session was killed, reconnecting");
}

/// SIGTERM ends the TUI whatever it is doing: connected (saying goodbye),
/// asked about an offer, waiting to reconnect; the terminal is restored.
#[test]
fn sigterm_ends_the_tui_in_every_state() {
    if !tmux_installed() {
        println!("SKIP: tmux is not installed (.ci/run installs it)");
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &[]);

    // Connected.
    let dir = tempfile::tempdir().unwrap();
    let (tmux, pid) = tui_in_tmux("term-connected", dir.path(), &server.addr());
    tmux.wait_for("● connected");
    terminate(pid);
    wait_gone(pid, "SIGTERM, connected");
    assert_terminal_restored(&tmux, dir.path());
    server.expect(&["\"alice\"", "said goodbye"]);

    // Asked about an offer.
    let dir = tempfile::tempdir().unwrap();
    let (tmux, pid) = tui_in_tmux("term-prompting", dir.path(), &server.addr());
    tmux.wait_for("● connected");
    let file = dir.path().join("offered.txt");
    std::fs::write(&file, b"for alice").unwrap();
    let file = file.display().to_string();
    let _bob = Proc::spawn(&[
        "send",
        &server.addr(),
        &file,
        "--to",
        "alice",
        "--name",
        "bob",
    ]);
    tmux.wait_for("bob offers offered.txt");
    terminate(pid);
    wait_gone(pid, "SIGTERM, asked about an offer");
    assert_terminal_restored(&tmux, dir.path());
    server.expect(&["\"alice\"", "said goodbye"]);

    // Waiting to reconnect.
    let dir = tempfile::tempdir().unwrap();
    let (tmux, pid) = tui_in_tmux("term-reconnecting", dir.path(), &server.addr());
    tmux.wait_for("● connected");
    stop_server_and_check_it_waits_idle(&mut server, &tmux, pid);
    terminate(pid);
    wait_gone(pid, "SIGTERM, reconnecting");
    assert_terminal_restored(&tmux, dir.path());
}

/// `ferry chat` on a terminal meeting a new server shows its fingerprint
/// and asks; "y" records it in the known-servers file and joins.
#[test]
fn chat_on_a_terminal_asks_about_a_new_server_and_remembers_it() {
    if !tmux_installed() {
        println!("SKIP: tmux is not installed (.ci/run installs it)");
        return;
    }
    let inbox = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Serve::start(inbox.path(), &[]);
    let fingerprint = server.expect(&["SHA256:"]);
    let known = dir.path().join("known_servers");
    let command = format!(
        "FERRY_STATE_DIR='{}' '{FERRY}' chat {} --name carol --known-servers '{}'; sleep 60",
        common::state_dir().display(),
        server.addr(),
        known.display()
    );
    let tmux = Tmux::start(
        format!("ferry-chat-ask-test-{}", std::process::id()),
        160,
        &command,
    );
    let screen = tmux.wait_for("Trust it and remember it? [y/N]");
    assert!(screen.contains(&fingerprint), "{screen}");
    assert!(!known.exists(), "recorded before the answer");
    tmux.type_line("y");
    server.expect(&["\"carol\"", "joined"]);
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        format!("{} {fingerprint}\n", server.addr())
    );
}
