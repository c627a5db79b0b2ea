//! Debian's docker-registry for the tests that push and pull images and packs, and the tools
//! they use (`#[path = "common/registry.rs"] mod registry;` beside `mod common;`).

#![allow(dead_code)]

use std::process::Command;

use crate::common::TestContext;

/// A program on PATH; in CI it must be there (scripts/test-tools.sh installs it).
pub fn tool(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if path.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs {name}: scripts/test-tools.sh installs it"
        );
        eprintln!("skipped: install Debian's {name}");
        return None;
    }
    Some(path)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Debian's docker-registry on 127.0.0.1: the one `.ci/run` started (`TERRARIUM_TEST_REGISTRY`),
/// else one of the test's own, with its own config and storage, stopped on drop.
pub struct Registry {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl Registry {
    pub fn start(cx: &TestContext) -> Option<Registry> {
        if let Some(address) = std::env::var_os("TERRARIUM_TEST_REGISTRY") {
            let port = address
                .to_string_lossy()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .expect("TERRARIUM_TEST_REGISTRY is 127.0.0.1:PORT");
            return Some(Registry { child: None, port });
        }
        let binary = tool("docker-registry")?;
        let port = free_port();
        let config = cx.write(
            &format!("registry-{port}.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                cx.path("registry-data").display()
            ),
        );
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Registry {
            child: Some(child),
            port,
        })
    }
}

impl Registry {
    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
