// Conversions between JS values and native structs, and native errors into JS errors.
#pragma once
#include <napi.h>

#include <string>
#include <utility>
#include <vector>

#include "../core/error.h"
#include "../model/jamba_model.h"

namespace jamba::napi {

// A JS Error whose `code` is the native error kind; lib/errors.ts maps it to a typed class.
Napi::Error make_error(Napi::Env env, const std::string& kind, const std::string& message);
Napi::Value reject_with(Napi::Env env, const std::string& kind, const std::string& message);

DType parse_dtype(const Napi::Env& env, const std::string& s);
int64_t get_int(const Napi::Object& o, const char* key);
ModelPlan parse_plan(const Napi::Object& plan);
// An op-by-op profile (ms per op family, in order) as [{ op, ms }].
Napi::Array profile_to_js(Napi::Env env, const std::vector<std::pair<std::string, double>>& profile);

}  // namespace jamba::napi
