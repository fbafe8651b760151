// Geometry primitives and a registry of shapes.
#include <memory>
#include <string>
#include <vector>
#include "geometry/config.hpp"

using namespace std;
using std::unique_ptr;

namespace geo {

/// Anything with an area and a name.
class Shape {
public:
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual string name() const { return "shape"; }
};

/// Axis-aligned rectangle.
class Rect : public Shape, private Printable {
public:
    Rect(double w, double h) : w_(w), h_(h) {}
    double area() const override { return w_ * h_; }
    string name() const override;

    // Corner point, relative to the origin.
    struct Corner {
        double x;
        double y;
        double dist() const { return std::sqrt(x * x + y * y); }
    };

private:
    double w_;
    double h_;
};

enum class Unit { Millimetre, Inch };

namespace detail {
inline double clamp(double v) { return v < 0 ? 0 : v; }
}  // namespace detail

/// Holds shapes and sums their areas.
template <typename T>
class Registry {
public:
    void add(unique_ptr<T> shape) { items_.push_back(std::move(shape)); }
    double total() const;

private:
    vector<unique_ptr<T>> items_;
};

}  // namespace geo

string geo::Rect::name() const
{
    return "rect " + to_string(area());
}

template <typename T>
double geo::Registry<T>::total() const
{
    double sum = 0;
    for (const auto &item : items_) {
        sum += detail::clamp(item->area());
    }
    return sum;
}

struct Point3 : geo::Shape {
    double area() const override { return 0; }
};

int main()
{
    geo::Registry<geo::Shape> registry;
    registry.add(make_unique<geo::Rect>(2.0, 3.0));
    auto report = [&registry]() { return registry.total(); };
    printf("%f\n", report());
    return 0;
}
