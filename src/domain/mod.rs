//! What calmline knows about conversations, independent of any transport: the labels and
//! languages, a text's limits and analysis, a conversation's turns and their assessment, the
//! guidance policy and the agent-conduct judge.

pub mod conduct;
pub mod conversation;
pub mod labels;
pub mod lang;
pub mod policy;
pub mod spans;
pub mod text;
