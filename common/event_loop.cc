#include "common/event_loop.h"

#include <algorithm>
#include <string>
#include <utility>

namespace eddy {

EventLoop::EventLoop(std::chrono::milliseconds max_wait) : max_wait_(max_wait) {}

void EventLoop::AddSocket(zmq::socket_t& socket, Handler on_readable, int max_per_round) {
  sources_.push_back({&socket, -1, std::move(on_readable), std::max(1, max_per_round)});
}

void EventLoop::AddFd(int fd, Handler on_readable) {
  sources_.push_back({nullptr, fd, std::move(on_readable), 1});
}

void EventLoop::AddWaker(Waker& waker, Handler on_wake) {
  AddFd(waker.fd(), [&waker, on_wake = std::move(on_wake)] {
    waker.Drain();
    on_wake();
  });
}

void EventLoop::AddTicker(Ticker ticker) { tickers_.push_back(std::move(ticker)); }

void EventLoop::Exit(Status status) {
  if (!exit_) exit_ = std::move(status);
}

Status EventLoop::Serve(Source& source) {
  for (int i = 0; i < source.max_per_round; ++i) {
    source.handler();
    if (exit_ || source.socket == nullptr) return OkStatus();
    if (i + 1 == source.max_per_round) return OkStatus();
    try {
      if (!(source.socket->get(zmq::sockopt::events) & ZMQ_POLLIN)) return OkStatus();
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("socket events failed: ") + e.what());
    }
  }
  return OkStatus();
}

Status EventLoop::Run() {
  exit_.reset();
  items_.clear();
  for (const Source& s : sources_) {
    items_.push_back({s.socket != nullptr ? s.socket->handle() : nullptr, s.fd, ZMQ_POLLIN, 0});
  }
  TimePoint next = SteadyClock::now();  // the first round does not wait
  while (true) {
    try {
      zmq::poll(items_.data(), items_.size(),
                std::chrono::milliseconds(PollTimeoutMs(next, max_wait_.count())));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    for (size_t i = 0; i < sources_.size(); ++i) {
      if (!(items_[i].revents & ZMQ_POLLIN)) continue;
      RETURN_IF_ERROR(Serve(sources_[i]));
      if (exit_) return *exit_;
    }
    const TimePoint now = SteadyClock::now();
    next = kNever;
    for (Ticker& ticker : tickers_) {
      ASSIGN_OR_RETURN(TimePoint due, ticker(now));
      if (exit_) return *exit_;
      next = std::min(next, due);
    }
  }
}

}  // namespace eddy
