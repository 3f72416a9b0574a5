"""A partner in another language: generates Python stubs from Protos/ with grpcio-tools and calls the
customer service and the gateway over HTTP/2. Prints one JSON object with what it saw.

usage: partner_client.py PROTOS_DIR GATEWAY_ADDR CUSTOMER_ADDR EMAIL [TLS_DIR]
With TLS_DIR (the folder of `rapport certs` or `rapport up --tls`), both channels use TLS: the gateway's is verified
against ca.pem; the customer service's also presents operator.pem (internal services need mutual TLS).
"""
import json
import os
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc


def generate(protos_dir):
    out = tempfile.mkdtemp(prefix="rapport-py-")
    protos = []
    for folder, _, files in os.walk(protos_dir):
        protos += [os.path.relpath(os.path.join(folder, f), protos_dir) for f in files if f.endswith(".proto")]
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(["protoc", f"-I{protos_dir}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}", *sorted(protos)])
    if status != 0:
        sys.exit(f"protoc failed with {status}")
    sys.path.insert(0, out)


def channel(address, folder, client_certificate=False):
    if not folder:
        return grpc.insecure_channel(address)
    read = lambda name: open(os.path.join(folder, name), "rb").read()
    if client_certificate:
        credentials = grpc.ssl_channel_credentials(read("ca.pem"), read("operator.key"), read("operator.pem"))
    else:
        credentials = grpc.ssl_channel_credentials(read("ca.pem"))
    return grpc.secure_channel(address, credentials)


def main():
    protos_dir, gateway_addr, customer_addr, email = sys.argv[1:5]
    tls_dir = sys.argv[5] if len(sys.argv) > 5 else None
    generate(protos_dir)
    from rapport.customer.v1 import customer_pb2, customer_pb2_grpc
    from rapport.gateway.v1 import gateway_pb2, gateway_pb2_grpc

    customers = customer_pb2_grpc.CustomerServiceStub(channel(customer_addr, tls_dir, client_certificate=True))
    found = customers.FindCustomer(customer_pb2.FindCustomerRequest(email=email.upper()), timeout=5).customer
    created = customers.CreateCustomer(
        customer_pb2.CreateCustomerRequest(email="python.partner@example.com", given_name="Py"), timeout=5).customer
    try:
        customers.CreateCustomer(customer_pb2.CreateCustomerRequest(email="not-an-email"), timeout=5)
        bad = {"code": "OK"}
    except grpc.RpcError as error:
        bad = {"code": error.code().name, "details": error.details()}

    def status_of(call):
        try:
            call()
            return "OK"
        except grpc.RpcError as error:
            return error.code().name

    # A 5 MB request is over the 4 MiB limit; a NUL character is refused naming the field.
    too_large = status_of(lambda: customers.CreateCustomer(
        customer_pb2.CreateCustomerRequest(email="big@example.com", given_name="x" * 5_000_000), timeout=10))
    try:
        customers.CreateCustomer(customer_pb2.CreateCustomerRequest(email="nul@example.com", given_name="A\0da"),
                                 timeout=5)
        nul = {"code": "OK"}
    except grpc.RpcError as error:
        nul = {"code": error.code().name, "details": error.details(),
               "request_id": dict(error.trailing_metadata() or ()).get("x-request-id", "")}

    gateway = gateway_pb2_grpc.PartnerGatewayStub(channel(gateway_addr, tls_dir))
    view = gateway.GetCustomerView(gateway_pb2.GetCustomerViewRequest(email=email), timeout=5).view
    print(json.dumps({
        "found_id": found.id,
        "created_email": created.email,
        "created_year": created.create_time.ToDatetime().year,
        "bad_request": bad,
        "too_large": too_large,
        "nul": nul,
        "view_customer_id": view.customer.id,
        "view_order_totals": [o.total.amount_minor for o in view.recent_orders],
        "view_sections": {s.name: s.code for s in view.sections},
    }))


if __name__ == "__main__":
    main()
