// validation/problem_json.hpp — Problem <-> JSON, every field, strict on the way in.
//
// Charter: the fixture attribute `problem`, suite files and reports all describe a case
// with this JSON. to_json writes every field of plx::Problem (plus the derived `member`
// name and `tau`, informational); from_json accepts any subset (missing fields keep
// their defaults; `member` is applied first so explicit probe/anchor/form override it),
// rejects unknown keys, wrong JSON types and unknown enum names with a plx::Error naming
// the field, and finally runs validate(). to_json(from_json(j)) round-trips exactly.
#pragma once
#include <nlohmann/json.hpp>

#include "reference/problem.hpp"

namespace plx {

nlohmann::json problem_to_json(const Problem& p);
Problem problem_from_json(const nlohmann::json& j);
// Parse JSON text and then the problem; any failure (syntax, type, range) is a plx::Error.
Problem problem_from_json_text(const std::string& text);

// Canonical text (sorted keys, no whitespace): what fixtures store and hashes compare.
std::string problem_json_text(const Problem& p);

}  // namespace plx
