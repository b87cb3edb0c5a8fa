#include "core/errors.h"

#include <c10/util/Exception.h>

#include <new>

namespace sam3 {

NativeError CurrentError(const char* default_code, const std::string& context) {
  const std::string prefix = context.empty() ? std::string() : context + ": ";
  try {
    throw;
  } catch (const NativeError& e) {
    return e;
  } catch (const c10::OutOfMemoryError& e) {
    return NativeError(code::kOutOfMemory,
                       prefix + "out of device memory (" + e.what_without_backtrace() +
                           "); use a smaller batch or image, or free cached features");
  } catch (const std::bad_alloc&) {
    return NativeError(code::kOutOfMemory, prefix + "out of host memory");
  } catch (const c10::Error& e) {
    // what_without_backtrace keeps the reason and drops libtorch's C++ stack dump.
    return NativeError(default_code, prefix + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return NativeError(default_code, prefix + e.what());
  } catch (...) {
    return NativeError(default_code, prefix + "unknown native error");
  }
}

}  // namespace sam3
