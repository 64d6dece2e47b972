//! What the tests of ferry-files share.
#![allow(dead_code)]

use ferry_core::{Code, ResumeKey};
use std::time::Instant;

/// Records the answers a `FileTransfers` gives to offers.
#[derive(Default)]
pub struct Answers(pub Vec<(u32, Result<u64, Code>)>, pub Vec<(u32, ResumeKey)>);

impl ferry_files::TransferControl for Answers {
    fn accept(
        &mut self,
        _: Instant,
        id: u32,
        resume: u64,
        key: ResumeKey,
    ) -> Result<(), ferry_core::Misuse> {
        self.0.push((id, Ok(resume)));
        self.1.push((id, key));
        Ok(())
    }
    fn reject(
        &mut self,
        _: Instant,
        id: u32,
        code: Code,
        _: &str,
    ) -> Result<(), ferry_core::Misuse> {
        self.0.push((id, Err(code)));
        Ok(())
    }
    fn cancel(&mut self, _: Instant, _: u32, _: Code, _: &str) -> Result<(), ferry_core::Misuse> {
        Ok(())
    }
    fn supply_chunk(
        &mut self,
        _: Instant,
        _: u32,
        _: u64,
        _: bytes::Bytes,
    ) -> Result<(), ferry_core::Misuse> {
        Ok(())
    }
    fn confirm_written(&mut self, _: Instant, _: u32, _: u64) -> Result<(), ferry_core::Misuse> {
        Ok(())
    }
    fn finish_receive(
        &mut self,
        _: Instant,
        _: u32,
        _: Result<(), (Code, String)>,
    ) -> Result<(), ferry_core::Misuse> {
        Ok(())
    }
    fn accept_tree(
        &mut self,
        _: Instant,
        id: u32,
        _: ferry_core::ResumeKey,
        _: &[ferry_core::frame::HeldFile],
    ) -> Result<(), ferry_core::Misuse> {
        self.0.push((id, Ok(0)));
        Ok(())
    }
    fn supply_tree_chunk(
        &mut self,
        _: Instant,
        _: u32,
        _: u32,
        _: u64,
        _: bytes::Bytes,
    ) -> Result<(), ferry_core::Misuse> {
        Ok(())
    }
}

impl Answers {
    pub fn of(&self, id: u32) -> Option<Result<u64, Code>> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, a)| *a)
    }

    /// The key handed out when `id` was accepted.
    pub fn key(&self, id: u32) -> ResumeKey {
        self.1.iter().find(|(i, _)| *i == id).unwrap().1
    }
}
