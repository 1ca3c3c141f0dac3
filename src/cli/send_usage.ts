/**
 * `mllp send --help`.
 *
 * @module
 */

import { MESSAGE_EXTENSIONS } from "./input.ts";
import { natsUsage } from "./nats_options.ts";

/** `mllp send --help`. */
export const SEND_USAGE =
  `Usage: mllp send --port PORT [options] FILE|DIR... | -

Send the messages in each FILE, each DIR and stdin ("-"), in order, on one
connection, stop-and-wait. A DIR is read recursively, names in sorted
order, taking files ending ${
    MESSAGE_EXTENSIONS.join(", ")
  } (any case) whose names do not
start with ".".

Everything is read and checked before anything is sent: each file that
cannot be sent is named on stderr with the reason ("error: FILE: ..."):
it cannot be read, it is not HL7, a header cannot be read, its charset
cannot be sent (see the charset flags), ... Then nothing is sent (exit
status 2), unless --keep-going.

A file must be HL7: after an optional UTF-8 byte order mark (and MLLP
frame), it starts with MSH, FHS or BHS (upper case), or is HL7 in UTF-16
or UTF-32 (then it is one message, sent byte for byte). It may hold many
messages: every line starting with MSH starts one, and a blank line ends
one. Batch segments (FHS, BHS, BTS, FTS) are not sent: each message of a
batch is sent on its own (unless --batch). A file that starts with VT
(0x0b) is read as MLLP frames, one message each. Segments may be
separated by CR, LF or CRLF; they are sent ended by CR.

Options:
  --host HOST      Receiver host name or IP address   [default: 127.0.0.1]
  --port PORT      Receiver port                      (required)
  --timeout MS     How long to wait for each reply, in milliseconds; also
                   caps the connect timeout (10000)   [default: 60000]
  --rate N         Send at most N messages per second (decimals allowed:
                   0.5 is one every 2 s)              [default: no limit]
  --keep-going     Go on past problems instead of stopping: a file that
                   cannot be sent is named and left out, and the others
                   are sent; after a reply timeout, a dropped connection
                   or an invalid reply, the client reconnects and the next
                   message goes. A failure to connect still stops the run.
                   The exit status is still 2
  --raw            Also send files (and frames) that are not HL7, each as
                   one payload, byte for byte, and print the reply; a NAK
                   (0x15) or the receiver's "mllp_unknown" (it does not
                   know the payload) is not accepted: exit status 1
  --json           Print one JSON object per message on stdout (and one
                   per file that cannot be sent), then the summary as a
                   JSON object with "summary": true
  --progress       Draw a progress bar on stderr even when it is not a
                   terminal; --no-progress never draws one
                   [default: when stderr is a terminal]
  -v, --verbose    Log at debug level to stderr (includes message bodies)
  -h, --help       Show this help

Protocol (see docs/protocol.md: MLLP release 2, character sets, batches,
enhanced acknowledgment mode):
  --mllp-release N   1, or 2: wait for the receiver's commit frame (0x06)
                     after each write, writing the frame again after a
                     timeout or a NAK (0x15), 3 times at most [default: 1]
  --commit-timeout MS
                     With --mllp-release 2: how long to wait for the
                     commit frame                        [default: 5000]
  --charset NAME     Charset (HL7 table 0211, such as 8859/1) of messages
                     whose MSH-18 is empty, and of their ACKs
                                                      [default: UTF-8]
  --charset-override NAME
                     Read every message (and ACK) in this charset,
                     whatever its MSH-18 says
  --strict-charset   Refuse, before sending, a message whose bytes do not
                     decode in its charset (or whose MSH-18 is not in
                     table 0211), naming the byte offset; an ACK that
                     does not decode is "not-an-ack"
  --allow-wide       Send UTF-16 and UTF-32 messages (refused otherwise:
                     their bytes can be MLLP framing bytes); the receiver
                     must allow them too (listen --allow-wide)
  --batch          Send a file that holds an FHS/BHS batch (or a frame of
                   a capture that does) as ONE frame, the batch, and
                   print one line per message from the response batch (a
                   message it does not name was accepted: AA). Only
                   batch files change; other files are sent as without
                   it. --rate counts a batch as one send
  --wait-app-ack   For a message in enhanced mode (MSH-15 or MSH-16
                   valued), also wait for the application ACK after the
                   commit ACK and print it: "ID CA 1.2 ms, app AA" ("app
                   none" when none comes); an AE or AR is exit status 1

TLS (on when any of these is given; TLS 1.2 or later). The receiver's
certificate is always verified, and must name --servername or --host:
  --ca FILE          CA certificate, PEM, that the receiver's certificate
                     must chain to; repeat the flag for several
                     [default: the system's trusted roots]
  --cert FILE        Client certificate, PEM, for receivers that require
                     one (mutual TLS); needs --key
  --key FILE         Its private key, PEM; needs --cert
  --servername NAME  The name the receiver's certificate must carry, when
                     it is not --host (say --host is an IP address and the
                     certificate names "localhost")     [default: --host]

Durable delivery (a PATH needs Deno KV: run Deno with --unstable-kv):
  --queue PATH     Queue the messages in a Deno KV file (or a KV Connect
                   URL) first, then deliver the queue in order, retrying
                   while the receiver cannot be reached; what is left is
                   sent by the next run (FILEs may then be omitted).
                   Messages that get AE/AR or no reply in time are
                   parked, not resent: "CONTROL_ID parked REASON"
                   (not with --rate, --keep-going, --json, --batch,
                   --wait-app-ack or --mllp-release)
  --queue nats://HOST:PORT[,HOST:PORT...]
                   Queue in a NATS JetStream stream instead (a quorum of
                   its replicas has each message before it is sent);
                   messages that get AE or no reply in time are sent
                   again later, and this run stops there, exit 2, as on
                   a transport failure; AR/CR parks. Workers given the
                   same servers, stream and destination share the queue
${natsUsage("queue")}
Output: one line per message on stdout (on a terminal, above the progress
bar):
  CONTROL_ID CODE TIME ms ["MSA-3 text"]     01052901 AA 3.2 ms
  ... , app CODE ["text"] | , app none       with --wait-app-ack
  CONTROL_ID unknown TIME ms REASON          --batch: the reply names
                                             nothing certain
  CONTROL_ID mismatch TIME ms ACK CODE names control id "ID"
  CONTROL_ID not-an-ack TIME ms REASON
  - reply TIME ms "REPLY"                    --raw: a payload's reply
  - reply TIME ms "mllp_unknown" (not accepted: ...)
  - NAK TIME ms                              a one-byte NAK (0x15) reply
At the end a summary goes to stderr: how many messages were written on the
connection, answered (got any reply) and accepted, the rate over the time
from the first send to the last one's end (with --rate N, each message
counts its 1/N s, so the rate is at most N), then the ACK codes:
  written 3 of 3, answered 3, accepted 2 in 0.05 s (60.0 msg/s): AA 2, AE 0, AR 1, CA 0, CE 0, CR 0, timeouts 0
  (then, when not zero: silent, other, replies, errors, files skipped;
  with --wait-app-ack: app AA N, app AE N, app AR N, app none N)
  round trip: p50 2.3 ms, p99 4.1 ms

Exit status:
  0  every message was accepted: AA or CA (or, with --raw, a reply other
     than a NAK or "mllp_unknown")
  1  a message got AE, AR, CE or CR (or, with --wait-app-ack, an
     application ACK AE or AR), an ACK for another message, a reply that
     is not an ACK, a NAK, or "mllp_unknown"
  2  bad flags, a file that cannot be sent (nothing is sent, unless
     --keep-going), or a transport error, timeout or TLS handshake
     failure, with the reason on stderr (sending stops at the first one,
     unless --keep-going)
`;
