//! `ferry tui` in a real terminal: tmux runs it in a 100x30 pane against a
//! `ferry serve`, keys are typed with `send-keys`, the screen is read with
//! `capture-pane`. Skipped, saying so, where tmux is not installed (CI
//! installs it).

mod common;

use common::{wait_until, Proc, Serve, FERRY};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

/// A tmux server of our own (its own socket), killed when dropped, even
/// when the test fails.
struct Tmux {
    socket: String,
}

impl Tmux {
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
        "'{FERRY}' tui {addr} --name alice --files-dir '{}'\n\
         status=$?\n\
         stty -a > '{}'\n\
         echo \"ferry exited $status\"\n\
         sleep 60",
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
    let tmux = Tmux {
        socket: format!("ferry-tui-test-{}", std::process::id()),
    };
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "ferry",
        "-x",
        "100",
        "-y",
        "30",
        &script(dir.path(), &server.addr()),
    ]);
    assert!(started.status.success(), "{started:?}");

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
