// Results of core functions -> JS values (on the JS thread, in an engine job's finisher).
#pragma once

#include <napi.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/detector.h"
#include "core/tracker.h"

namespace sam3 {

// A JS string of bytes known to be ASCII (COCO RLE counts): created as latin1, which V8 copies
// as one-byte characters without the UTF-8 decoding Napi::String::New(std::string) asks for.
Napi::String AsciiString(Napi::Env env, const std::string& s);

// {name: value, ...} of an engine job's stage timings (milliseconds, counts), in the given order.
Napi::Object TimingsToJs(Napi::Env env, std::initializer_list<std::pair<const char*, double>> timings);

Napi::Float32Array ToFloat32Array(Napi::Env env, const std::vector<float>& v);

// COCO RLE strings as a JS array of strings.
Napi::Array RleStrings(Napi::Env env, const std::vector<std::string>& masks);

// NativeQueryResult: {scores, boxes, masks, height, width}.
Napi::Object QueryResultToJs(Napi::Env env, const QueryResult& q, int64_t height, int64_t width);

// {queries, timings} of segment().
Napi::Object SegmentResultToJs(Napi::Env env, const SegmentResult& r);

// NativeStepResult: {needFrame: true} or {frame, objIds, masks, boxes, scores, logits, memoryBytes, height, width}.
Napi::Object StepResultToJs(Napi::Env env, const StepResult& s);

}  // namespace sam3
