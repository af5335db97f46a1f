// Output: fixed-width tables on stdout, printed row by row as results arrive (a long run shows
// progress), and the optional CSV file.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace fastloss_bench {

struct Column {
    const char* title;
    int width;
    bool left = false;  // text columns left-aligned, numbers right-aligned
};

class Table {
public:
    explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
    void print_header() const;
    void print_row(const std::vector<std::string>& cells) const;

private:
    std::vector<Column> columns_;
};

// printf-style formatting into a std::string, for table cells.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

void print_section(const std::string& title);

// One CSV row per measurement. Columns that do not apply to a row (the roofline of a roofline
// measurement, G elements/s of a kernel) are left empty.
struct CsvRow {
    std::string op, isa;
    int threads = 0;
    std::string dtype, layout, shape;
    double median_ms = 0, min_ms = 0;
    double gbps = -1, gelem_per_s = -1;
    double roofline_ms = -1, roofline_fraction = -1, x_of_roofline = -1;
    double math_ms = -1, x_of_ceiling = -1;  // x_of_ceiling: median / max(roofline, math)
};

class CsvWriter {
public:
    // An empty path disables the writer. Throws std::runtime_error if the file cannot be opened.
    explicit CsvWriter(const std::string& path);
    ~CsvWriter();
    CsvWriter(const CsvWriter&) = delete;
    CsvWriter& operator=(const CsvWriter&) = delete;
    void write(const CsvRow& row);

private:
    std::FILE* file_ = nullptr;
};

}  // namespace fastloss_bench
