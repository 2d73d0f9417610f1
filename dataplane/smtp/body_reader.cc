// DATA and BDAT content readers; see body_reader.h for why the state machine is shaped this way.
#include "dataplane/smtp/body_reader.h"

namespace mxedge::smtp {

DataReader::DataReader(uint64_t max_size, uint32_t max_line_length, BodySink* sink)
    : max_size_(max_size), max_line_(max_line_length > 2 ? max_line_length - 2 : 0), sink_(sink) {}

void DataReader::emit(std::string_view data) {
  if (data.empty()) return;
  flags_.size += data.size();
  if (flags_.size > max_size_) flags_.too_big = true;
  // Once a message is refused its content is of no use: stop writing it anywhere.
  if (flags_.acceptable() && sink_ != nullptr) sink_->append(data);
}

size_t DataReader::feed(std::string_view in) {
  size_t i = 0;
  size_t run = 0;  // start of the bytes not yet emitted
  const size_t n = in.size();
  while (i < n && state_ != State::kDone) {
    const char c = in[i];
    switch (state_) {
      case State::kLineStart:
      case State::kInLine:
        if (state_ == State::kLineStart && c == '.') {
          emit(in.substr(run, i - run));  // drop the stuffed dot
          run = i + 1;
          ++line_len_;
          state_ = State::kDot;
          ++i;
          break;
        }
        // Fast path: scan ordinary line bytes.
        while (i < n && in[i] != '\r' && in[i] != '\n') {
          ++i;
          ++line_len_;
        }
        if (line_len_ > max_line_) flags_.line_too_long = true;
        if (i >= n) {
          state_ = State::kInLine;
          break;
        }
        if (in[i] == '\n') {
          taint();  // bare LF: content, not a line break
          state_ = State::kInLine;
          ++i;
          break;
        }
        state_ = State::kCr;
        ++i;
        break;
      case State::kCr:
        if (c == '\n') {
          state_ = State::kLineStart;
          line_len_ = 0;
          ++i;
        } else {
          taint();  // bare CR; reprocess this byte as line content
          state_ = State::kInLine;
        }
        break;
      case State::kDot:
        if (c == '\r') {
          // Possibly the terminator. Its CR is never content: if no LF follows, the CR is bare and
          // the message is refused anyway.
          emit(in.substr(run, i - run));
          run = i + 1;
          state_ = State::kDotCr;
          ++i;
        } else if (c == '\n') {
          taint();
          state_ = State::kInLine;
          ++i;
        } else {
          state_ = State::kInLine;  // the un-stuffed line continues
        }
        break;
      case State::kDotCr:
        if (c == '\n') {
          run = i + 1;
          state_ = State::kDone;
          ++i;
        } else {
          taint();
          state_ = State::kInLine;
        }
        break;
      case State::kDone:
        break;
    }
  }
  if (state_ != State::kDone) emit(in.substr(run, i - run));
  return i;
}

ChunkReader::ChunkReader(uint64_t max_size, uint32_t max_line_length, BodySink* sink)
    : max_size_(max_size), max_line_(max_line_length > 2 ? max_line_length - 2 : 0), sink_(sink) {}

void ChunkReader::feed(std::string_view data) {
  for (char c : data) {
    if (prev_cr_) {
      if (c != '\n') flags_.bare_cr_or_lf = true;
      else line_len_ = 0;
      prev_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r') {
      prev_cr_ = true;
    } else if (c == '\n') {
      flags_.bare_cr_or_lf = true;
    } else if (++line_len_ > max_line_) {
      flags_.line_too_long = true;
    }
  }
  flags_.size += data.size();
  if (flags_.size > max_size_) flags_.too_big = true;
  if (flags_.acceptable() && sink_ != nullptr) sink_->append(data);
}

void ChunkReader::finish() {
  if (prev_cr_) flags_.bare_cr_or_lf = true;
}

namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

}  // namespace

void HeaderScanner::end_field() {
  if (field_.empty() || field_.size() > kMaxField) {
    field_.clear();
    return;
  }
  std::string_view f(field_);
  const size_t colon = f.find(':');
  if (colon != std::string_view::npos) {
    std::string_view name = f.substr(0, colon);
    std::string_view value = f.substr(colon + 1);
    while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);  // RFC 5322 4.5.8 obs-optional
    while (!value.empty() && is_wsp(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_wsp(value.back())) value.remove_suffix(1);
    if (iequal(name, "TLS-Required") && iequal(value, "No")) tls_required_no_ = true;
  }
  field_.clear();
}

void HeaderScanner::append(std::string_view data) {
  if (next_ != nullptr) next_->append(data);
  for (size_t i = 0; i < data.size() && in_header_; ++i) {
    const char c = data[i];
    if (prev_cr_) {
      prev_cr_ = false;
      if (c == '\n') {
        if (line_empty_) {  // the empty line: the header section is over
          end_field();
          in_header_ = false;
          return;
        }
        at_line_start_ = true;
        line_empty_ = true;
        continue;
      }
      // A bare CR: the message is refused anyway; keep it as content of the field.
      if (field_.size() <= kMaxField) field_.push_back('\r');
    }
    if (c == '\r') {
      prev_cr_ = true;
      continue;
    }
    if (at_line_start_) {
      at_line_start_ = false;
      line_empty_ = false;
      if (!is_wsp(c)) end_field();  // a new field; a line starting with WSP continues (unfolds) the last
    }
    line_empty_ = false;
    if (field_.size() <= kMaxField) field_.push_back(c);
  }
}

void HeaderScanner::finish() {
  if (in_header_) end_field();
}

}  // namespace mxedge::smtp
