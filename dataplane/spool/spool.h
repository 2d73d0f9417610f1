// The durable spool of one worker: the only writer of its directory <spool>/w<k>/.
//
// Layout: an append-only log of records in segment files (seg-<seq>.log). A MESSAGE record holds the
// envelope (mxedge.spool.v1.Envelope) and, for bodies up to spool.memory_body_limit, the body itself;
// larger bodies stream into data/<queue-id> while they arrive and the record points at that file. A
// RESULT record notes recipients whose fate is settled (delivered or permanently failed).
//
// Group commit: messages completed during one turn of the worker's event loop are appended together
// and made durable with one fdatasync of the segment (plus one per spilled body file and one of the
// directory when a file was created). Only then are their "250 queued as" replies released, so a
// message is acknowledged only after it is on disk, and one disk flush serves many sessions.
//
// Recovery reads every segment in order, checks each record's length and CRC-32C, truncates a torn
// tail (a record whose write a crash interrupted was never acknowledged), and hands every message with
// unsettled recipients to the relay again. A segment is removed once it and every older segment hold
// no unsettled message, so RESULT records always outlive the records they settle.
//
// SECURITY: nothing here parses peer input except through the checked envelope; file names are
// queue ids we generate. Errors (ENOSPC, EIO) leave the log as it was before the failed append.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/smtp/server_session.h"
#include "mxedge/spool/v1/spool.pb.h"

namespace mxedge::spool {

struct SpoolOptions {
  std::string directory;            // the spool root; this worker uses <directory>/w<index>
  uint64_t memory_body_limit = 64 << 10;
  uint64_t min_free_bytes = 0;
  uint64_t segment_size = 64ULL << 20;
};

enum class RecipientState : uint8_t { kPending = 0, kDelivered = 1, kFailed = 2 };

// One spooled message with unsettled recipients.
struct SpoolEntry {
  mxedge::spool::v1::Envelope envelope;
  uint64_t segment = 0;      // sequence number of the segment holding its record
  uint64_t body_offset = 0;  // within the segment, when the body is inline
  std::vector<RecipientState> recipients;
  // Delivery attempts so far (the relay's back-off grows with them).
  uint32_t attempts = 0;
  // A delay notice went to the sender (not persisted: after a restart one may be sent again).
  bool delay_notified = false;
  // For the management API's queue view (not persisted): why the last attempt was deferred, and
  // when (Unix ms) the next one is due; 0 while ready or in flight.
  std::string last_error;
  int64_t next_attempt_ms = 0;
  // Held by an administrator (a HOLD record; survives restarts): in no delivery queue.
  bool held = false;
  // REQUIRETLS (RFC 8689 4.2.1; not persisted): per recipient domain, the MX hosts whose session did
  // not satisfy it and why, so that the other hosts are tried before the message fails with 5.7.30.
  std::map<std::string, std::map<std::string, std::string>> requiretls_refused;
};

class Spool {
 public:
  using ReadyCallback = std::function<void(SpoolEntry*)>;
  using CommitCallback = std::function<void(smtp::CommitStatus)>;

  // Opens <options.directory>/w<worker_index>, creating it, and recovers what it holds. Entries
  // recovered are handed to on_ready once set_ready_callback is called.
  static std::unique_ptr<Spool> open(const SpoolOptions& options, unsigned worker_index, std::string* error);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  std::string new_queue_id();
  std::unique_ptr<smtp::BodySink> open_body(const std::string& queue_id);
  bool has_room();

  // Queues a received message for the next group commit; done is called from commit_staged().
  void stage(smtp::ServerSession::Message message, CommitCallback done);
  bool has_staged() const { return !staged_.empty(); }
  void commit_staged();

  void set_ready_callback(ReadyCallback cb);

  // Reads up to length octets of the canonical body starting at offset.
  bool read_body(const SpoolEntry& entry, uint64_t offset, size_t length, std::string& out);

  // Records settled recipients; the entry is destroyed when none remain pending. Results become
  // durable with the next commit or flush (a crash before that only repeats a delivery).
  void settle(SpoolEntry* entry, const std::vector<mxedge::spool::v1::RecipientResult>& results);
  void flush();
  // Holds or releases `entry` durably (a HOLD record, synced before returning). False with *error
  // when the record cannot be written; the entry is unchanged then.
  bool set_held(SpoolEntry* entry, bool held, std::string* error);

  size_t pending_messages() const { return entries_.size(); }
  // The entry of `queue_id` while it has unsettled recipients, else null.
  SpoolEntry* find(const std::string& queue_id) {
    auto it = entries_.find(queue_id);
    return it == entries_.end() ? nullptr : it->second.get();
  }
  // Every entry with unsettled recipients (the management API's queue view), in no particular order.
  template <typename Fn>
  void for_each_entry(Fn&& fn) const {
    for (const auto& [qid, entry] : entries_) fn(*entry);
  }
  std::vector<SpoolEntry*> entries() {
    std::vector<SpoolEntry*> out;
    for (auto& [qid, entry] : entries_) out.push_back(entry.get());
    return out;
  }
  const std::string& directory() const { return dir_; }

  // Moves segments and body files of worker directories w<k>, k >= workers, into w0 so that a smaller
  // worker set still delivers everything. Call before any worker opens its spool.
  static bool adopt_orphans(const std::string& root, unsigned workers, std::string* error);

 private:
  struct Segment {
    uint64_t seq = 0;
    int fd = -1;
    uint64_t size = 0;
    uint64_t unsettled = 0;
  };
  struct Staged {
    smtp::ServerSession::Message message;
    CommitCallback done;
  };

  Spool(SpoolOptions options, unsigned worker_index, std::string dir);
  bool recover(std::string* error);
  bool recover_segment(Segment& seg, bool is_last, std::string* error);
  bool open_new_segment(std::string* error);
  Segment* segment(uint64_t seq);
  // Appends one record; on failure the segment is truncated back and errno is returned.
  int append_record(uint32_t type, const std::string& head, std::string_view body);
  void retire_segments();
  std::string segment_path(uint64_t seq) const;

  SpoolOptions options_;
  unsigned worker_;
  std::string dir_;
  std::deque<Segment> segments_;  // oldest first; back() is the active one
  std::unordered_map<std::string, std::unique_ptr<SpoolEntry>> entries_;
  std::vector<Staged> staged_;
  ReadyCallback on_ready_;
  std::vector<SpoolEntry*> recovered_;
  bool results_dirty_ = false;
  uint32_t qid_counter_ = 0;
  int64_t room_checked_ms_ = -1;
  bool room_ = true;
};

}  // namespace mxedge::spool
