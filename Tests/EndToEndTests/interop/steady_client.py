"""Steady traffic to the order service from a client that does only what gRPC's service config says:
waitForReady, and a retry policy for UNAVAILABLE with exponential backoff (gRFC A6, grpcio's own
implementation). No retry of its own. The rolling-replacement test (OperationsTests) runs it while it
replaces the order service.

usage: steady_client.py PROTOS_DIR ORDER_ADDR CUSTOMER_ID READY_FILE STOP_FILE
Places orders (and reads each back) from two threads until STOP_FILE exists (or for 120 s at most);
writes READY_FILE after the first order is acknowledged. Prints one JSON object: sent, placed (the acknowledged order ids), failures.
"""
import json
import os
import sys
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from partner_client import generate  # noqa: E402

SERVICE_CONFIG = {
    "methodConfig": [{
        "name": [{"service": "rapport.order.v1.OrderService"}],
        "waitForReady": True,
        "timeout": "30s",
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.5s",
            "maxBackoff": "4s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
}


def main():
    protos_dir, order_addr, customer_id, ready_file, stop_file = sys.argv[1:6]
    generate(protos_dir)
    from rapport.common.v1 import common_pb2
    from rapport.order.v1 import order_pb2, order_pb2_grpc

    channel = grpc.insecure_channel(order_addr, options=[
        ("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(SERVICE_CONFIG))])
    orders = order_pb2_grpc.OrderServiceStub(channel)
    lock = threading.Lock()
    seen = {"sent": 0, "placed": [], "failures": []}

    give_up = time.monotonic() + 120

    def worker(number):
        n = 0
        while not os.path.exists(stop_file) and time.monotonic() < give_up:
            key = f"py-steady-{number}-{n}"
            n += 1
            with lock:
                seen["sent"] += 1
            try:
                placed = orders.PlaceOrder(order_pb2.PlaceOrderRequest(
                    idempotency_key=key, customer_id=customer_id, channel=common_pb2.CHANNEL_WEB, currency="EUR",
                    lines=[order_pb2.OrderLine(sku="TEA", title="Tea", quantity=1, unit_price_minor=450)])).order
                orders.GetOrder(order_pb2.GetOrderRequest(order_id=placed.id))
                with lock:
                    seen["placed"].append(placed.id)
                if not os.path.exists(ready_file):
                    open(ready_file, "w").close()
            except grpc.RpcError as error:
                with lock:
                    seen["failures"].append(f"{key}: {error.code().name} {error.details()}")
            time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
