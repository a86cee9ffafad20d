// Built with the flags of `pkg-config --cflags --libs plx` only: parse and validate a problem.
// Exit 0 when a valid problem is accepted and an invalid one is refused naming its field.
#include <iostream>

#include "validation/problem_json.hpp"

int main() {
  const plx::Problem p = plx::problem_from_json(nlohmann::json::parse(R"({"member": "parallax", "Hq": 4, "Hkv": 2})"));
  try {
    plx::problem_from_json(nlohmann::json::parse(R"({"Hq": 3, "Hkv": 2})"));
    std::cout << "invalid problem accepted\n";
    return 1;
  } catch (const plx::Error& e) {
    const bool named = std::string(e.what()).find("'Hq'") != std::string::npos;
    std::cout << plx::member_name(p) << " G=" << p.group() << "; refused: " << e.what() << "\n";
    return named && p.group() == 2 ? 0 : 1;
  }
}
