#include "report.hpp"

#include <cstdarg>
#include <stdexcept>

namespace fastloss_bench {

std::string format(const char* fmt, ...) {
    char buf[256];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    return buf;
}

void Table::print_header() const {
    std::vector<std::string> titles;
    std::string rule;
    for (const auto& c : columns_) {
        titles.emplace_back(c.title);
        rule += std::string(static_cast<size_t>(c.width), '-') + "  ";
    }
    print_row(titles);
    rule.resize(rule.size() - 2);
    std::printf("%s\n", rule.c_str());
}

void Table::print_row(const std::vector<std::string>& cells) const {
    std::string line;
    for (size_t i = 0; i < columns_.size(); ++i) {
        const std::string& cell = i < cells.size() ? cells[i] : std::string();
        const Column& c = columns_[i];
        line += format(c.left ? "%-*s" : "%*s", c.width, cell.c_str());
        if (i + 1 < columns_.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);  // rows arrive seconds apart: show progress
}

void print_section(const std::string& title) {
    std::printf("\n== %s ==\n", title.c_str());
}

CsvWriter::CsvWriter(const std::string& path) {
    if (path.empty()) return;
    file_ = std::fopen(path.c_str(), "w");
    if (!file_) throw std::runtime_error("cannot open --csv file '" + path + "'");
    std::fputs("op,isa,threads,dtype,layout,shape,median_ms,min_ms,gbps,gelem_per_s,roofline_ms,"
               "roofline_fraction,x_of_roofline,math_ms,x_of_ceiling\n",
               file_);
}

CsvWriter::~CsvWriter() {
    if (file_) std::fclose(file_);
}

void CsvWriter::write(const CsvRow& r) {
    if (!file_) return;
    auto optional = [](double v) { return v < 0 ? std::string() : format("%.6g", v); };
    std::fprintf(file_, "%s,%s,%d,%s,%s,%s,%.6g,%.6g,%s,%s,%s,%s,%s,%s,%s\n", r.op.c_str(),
                 r.isa.c_str(), r.threads, r.dtype.c_str(), r.layout.c_str(), r.shape.c_str(),
                 r.median_ms, r.min_ms, optional(r.gbps).c_str(), optional(r.gelem_per_s).c_str(),
                 optional(r.roofline_ms).c_str(), optional(r.roofline_fraction).c_str(),
                 optional(r.x_of_roofline).c_str(), optional(r.math_ms).c_str(),
                 optional(r.x_of_ceiling).c_str());
    std::fflush(file_);
}

}  // namespace fastloss_bench
