//! TEMPORARY placeholder until the filename branch merges.
#![allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("bad")]
    Bad,
}
pub fn check_file_name(name: &str) -> Result<&str, FileNameError> {
    if name.is_empty()
        || name.contains(['/', '\\', ':'])
        || name == ".."
        || name.chars().any(char::is_control)
    {
        Err(FileNameError::Bad)
    } else {
        Ok(name)
    }
}
