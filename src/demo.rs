//! `ringway demo`: three demo LLM-like backends and a proxy in front of them.
