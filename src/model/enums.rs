//! The string enums of the conversation models (API.md §3.6–§3.9), each tolerant of
//! values Genesys adds later.

use crate::wire_enum;

wire_enum! {
    /// `state` / `initialState` of a communication (and, on the `.messages` topics, of a participant).
    pub enum CommunicationState {
        Alerting = "alerting",
        Dialing = "dialing",
        Contacting = "contacting",
        Offering = "offering",
        Scheduled = "scheduled",
        Connected = "connected",
        Parked = "parked",
        Uploading = "uploading",
        Converting = "converting",
        Transmitting = "transmitting",
        Disconnected = "disconnected",
        Terminated = "terminated",
        None = "none",
    }
}

wire_enum! {
    /// `disconnectType` of a communication or participant.
    pub enum DisconnectType {
        Endpoint = "endpoint",
        EndpointDnd = "endpoint.dnd",
        Client = "client",
        System = "system",
        Timeout = "timeout",
        Transfer = "transfer",
        TransferConference = "transfer.conference",
        TransferConsult = "transfer.consult",
        TransferForward = "transfer.forward",
        TransferNoAnswer = "transfer.noanswer",
        TransferNotAvailable = "transfer.notavailable",
        TransferDnd = "transfer.dnd",
        TransportFailure = "transport.failure",
        Error = "error",
        Peer = "peer",
        Other = "other",
        Spam = "spam",
        Uncallable = "uncallable",
        Inactivity = "inactivity",
        SessionExpired = "session.expired",
        Takeover = "takeover",
    }
}

wire_enum! {
    /// `messageStatus` of one message (lower-case, hyphenated; there is no plain "delivered").
    pub enum MessageStatus {
        Queued = "queued",
        Sent = "sent",
        Failed = "failed",
        Received = "received",
        DeliverySuccess = "delivery-success",
        DeliveryFailed = "delivery-failed",
        Read = "read",
        Removed = "removed",
        Published = "published",
    }
}

wire_enum! {
    /// `direction` of a communication.
    pub enum Direction {
        Inbound = "inbound",
        Outbound = "outbound",
    }
}

wire_enum! {
    /// `purpose` of a participant.
    pub enum Purpose {
        Customer = "customer",
        Agent = "agent",
        User = "user",
        Acd = "acd",
        Ivr = "ivr",
        Workflow = "workflow",
        External = "external",
        Voicemail = "voicemail",
        Api = "api",
        Outbound = "outbound",
    }
}

wire_enum! {
    /// `afterCallWork.state` of a communication.
    pub enum AfterCallWorkState {
        Unknown_ = "unknown",
        NotApplicable = "notApplicable",
        Pending = "pending",
        Skipped = "skipped",
        Complete = "complete",
    }
}

wire_enum! {
    /// `type` of a message communication (the messaging platform).
    pub enum MessageType {
        Sms = "sms",
        Twitter = "twitter",
        Facebook = "facebook",
        Line = "line",
        Viber = "viber",
        Wechat = "wechat",
        Whatsapp = "whatsapp",
        Telegram = "telegram",
        Kakao = "kakao",
        Webmessaging = "webmessaging",
        Open = "open",
        Instagram = "instagram",
        Apple = "apple",
        Unknown_ = "unknown",
    }
}

wire_enum! {
    /// `channel` of a real-time transcript: which side spoke.
    pub enum TranscriptChannel {
        /// The agent side.
        Internal = "INTERNAL",
        /// The customer side.
        External = "EXTERNAL",
        Both = "BOTH",
        Unknown_ = "UNKNOWN",
    }
}

wire_enum! {
    /// `mediaType` of a detail event (upper case).
    pub enum DetailMediaType {
        Voice = "VOICE",
        Chat = "CHAT",
        Email = "EMAIL",
        Callback = "CALLBACK",
        Cobrowse = "COBROWSE",
        Video = "VIDEO",
        Screenshare = "SCREENSHARE",
        Message = "MESSAGE",
        InternalMessage = "INTERNALMESSAGE",
        ScreenMonitoring = "SCREENMONITORING",
        Unknown_ = "UNKNOWN",
    }
}
