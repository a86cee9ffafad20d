// reference/scalar_names.hpp — one identifier per scalar, for generated instantiation units.
#pragma once
#include "reference/scalar.hpp"
namespace plx::inst_alias {
using double_ = double;
using long_double = long double;
using dd = plx::dd;
using qd4 = plx::qd4;
using f128 = plx::f128;
using bf50 = plx::bf50;
using bf100 = plx::bf100;
using mpfr = plx::mpfr;
}  // namespace plx::inst_alias
