"""Calls Rapport's partner API with only the .proto files and a key.

usage: python partner_example.py PROTOS_DIR GATEWAY_ADDR CA_PEM KEY EMAIL
(CA_PEM "-" for a gateway without TLS.) Prints one JSON object: what the key could see and do.
"""
import json
import os
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc


def generate_stubs(protos_dir):
    out = tempfile.mkdtemp(prefix="rapport-py-")
    protos = [os.path.relpath(os.path.join(folder, name), protos_dir)
              for folder, _, names in os.walk(protos_dir) for name in names if name.endswith(".proto")]
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    if protoc.main(["protoc", f"-I{protos_dir}", f"-I{include}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *protos]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)


def main():
    protos_dir, address, ca_pem, key, email = sys.argv[1:6]
    generate_stubs(protos_dir)
    from rapport.common.v1 import common_pb2
    from rapport.customer.v1 import customer_pb2
    from rapport.gateway.v1 import gateway_pb2, gateway_pb2_grpc
    from rapport.order.v1 import order_pb2
    from rapport.support.v1 import support_pb2

    if ca_pem == "-":
        channel = grpc.insecure_channel(address)
    else:
        with open(ca_pem, "rb") as file:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=file.read()))
    gateway = gateway_pb2_grpc.PartnerGatewayStub(channel)
    auth = [("authorization", f"Bearer {key}")]

    def call(method, request):
        """The response, or the gRPC status name of the failure."""
        try:
            return getattr(gateway, method)(request, metadata=auth, timeout=5)
        except grpc.RpcError as error:
            return error.code().name

    seen = {}
    found = call("FindCustomer", customer_pb2.FindCustomerRequest(email=email))
    seen["find"] = found if isinstance(found, str) else found.customer.id
    if isinstance(found, str):
        print(json.dumps(seen))
        return
    customer_id = found.customer.id
    view = call("GetCustomerView", gateway_pb2.GetCustomerViewRequest(customer_id=customer_id))
    seen["view_sections"] = view if isinstance(view, str) else {s.name: s.code for s in view.view.sections}
    orders = call("ListOrders", order_pb2.ListOrdersRequest(customer_id=customer_id))
    seen["orders"] = orders if isinstance(orders, str) else [o.id for o in orders.orders]
    search = call("SearchCustomers", customer_pb2.SearchCustomersRequest(query="example"))
    seen["search"] = search if isinstance(search, str) else [c.id for c in search.customers]
    # Writes are idempotent: the same idempotency key twice places one order.
    order = order_pb2.PlaceOrderRequest(
        idempotency_key=f"py-{customer_id}", customer_id=customer_id, channel=common_pb2.CHANNEL_WEB, currency="EUR",
        lines=[order_pb2.OrderLine(sku="TEA-1", title="Green tea", quantity=2, unit_price_minor=450)])
    placed = [call("PlaceOrder", order) for _ in range(2)]
    seen["place"] = [p if isinstance(p, str) else p.order.id for p in placed]
    ticket = call("OpenTicket", support_pb2.OpenTicketRequest(
        customer_id=customer_id, subject="Order question", body="Where is my tea?", request_id=f"py-{customer_id}"))
    seen["ticket"] = ticket if isinstance(ticket, str) else ticket.ticket.id
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
