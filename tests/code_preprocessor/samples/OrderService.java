package com.example.orders;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.*;
import static java.util.Objects.requireNonNull;

/**
 * Places orders and keeps them in a repository.
 */
public class OrderService extends AbstractService implements AutoCloseable, Listener<Order> {
    private final OrderRepository repository;
    private final ExecutorService executor = Executors.newFixedThreadPool(2);

    /** Creates the service over a repository. */
    public OrderService(OrderRepository repository) {
        super("orders");
        this.repository = requireNonNull(repository);
    }

    // Places an order and returns its id.
    public long place(String customer, List<Item> items) {
        Order order = new Order(customer, new ArrayList<>(items), Status.NEW);
        validate(order);
        executor.submit(() -> repository.save(order));
        return order.id();
    }

    private void validate(Order order) {
        if (order.items().isEmpty()) {
            throw new IllegalArgumentException("empty order");
        }
    }

    @Override
    public void onEvent(Order order) {
        log.info("event for {}", order.id());
    }

    @Override
    public void close() throws InterruptedException {
        executor.shutdown();
        executor.awaitTermination(5, TimeUnit.SECONDS);
    }

    /** Lifecycle of an order. */
    public enum Status implements Labeled {
        NEW, PAID, SHIPPED;

        @Override
        public String label() {
            return name().toLowerCase();
        }
    }

    /** An immutable order. */
    public record Order(String customer, List<Item> items, Status status) {
        public Order {
            items = List.copyOf(items);
        }

        public long id() {
            return Math.abs(customer.hashCode());
        }
    }

    static class Item {
        final String sku;

        Item(String sku) {
            this.sku = sku;
        }
    }

    class Audit implements Runnable {
        @Override
        public void run() {
            repository.audit(Instant.now());
        }
    }
}

interface OrderRepository extends Repository<OrderService.Order>, Auditable {
    void save(OrderService.Order order);

    default int count() {
        return findAll().size();
    }
}
