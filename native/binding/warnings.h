// libtorch's own warnings (TORCH_WARN, TORCH_WARN_ONCE) routed to a JS listener instead of stderr.
//
// c10's warning handler is per thread, so each thread that runs libtorch for us (the JS thread at
// load, every engine thread) installs the relay with InstallWarningRelay(). A warning raised on any
// of them is queued under a mutex (identical ones coalesced into a count, the queue bounded) and a
// thread-safe function wakes the JS thread, which drains the queue and calls the listener: no N-API
// call is made off the JS thread. Without a listener, warnings go to c10's default handler (stderr).
// Threads libtorch starts itself (its intra-op pool) keep c10's default handler.
#pragma once

#include <napi.h>

namespace sam3 {

// Makes the calling thread's libtorch warnings go through the relay.
void InstallWarningRelay();

// setWarningListener(listener: ((warnings: {message, source, deprecation, count}[], dropped) => void) | null)
// The listener runs on the JS thread of the environment that set it; null restores stderr.
Napi::Value SetWarningListener(const Napi::CallbackInfo& info);

}  // namespace sam3
