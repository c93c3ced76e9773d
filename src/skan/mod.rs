//! SKAdNetwork and AdAttributionKit postbacks (SPEC "SKAdNetwork and AdAttributionKit
//! postbacks"): Apple's keys in one place (`keys`), their signatures checked (`signature`),
//! a postback read into one shape whichever framework sent it (`postback`), the apps that
//! name a postback's tenant (`app`, `apps`), receiving — verify, store once, forward —
//! (`receive`), the campaign map (`campaigns`) and the figures (`stats`).

pub mod app;
pub mod apps;
pub mod campaigns;
pub mod keys;
pub mod postback;
pub mod receive;
pub mod signature;
pub mod stats;
