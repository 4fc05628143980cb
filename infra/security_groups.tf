# Agents dial out to the control plane's management port and reach S3 through the VPC
# endpoint; nothing dials in to them. Clients reach only the inference port.

resource "aws_security_group" "agent" {
  name        = "paddler-${var.cluster}-agent"
  description = "Paddler agents: outbound to the control plane management port and S3 only"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "control_plane" {
  #checkov:skip=CKV2_AWS_5:attached to the control plane host, which runs outside this module (see outputs)
  name        = "paddler-${var.cluster}-control-plane"
  description = "Paddler control plane: inference port for clients, management port for agents"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "agent_to_management" {
  security_group_id            = aws_security_group.agent.id
  description                  = "agent websocket to the control plane"
  referenced_security_group_id = aws_security_group.control_plane.id
  ip_protocol                  = "tcp"
  from_port                    = var.management_port
  to_port                      = var.management_port
}

resource "aws_vpc_security_group_egress_rule" "agent_to_s3" {
  security_group_id = aws_security_group.agent.id
  description       = "model downloads from S3 through the gateway endpoint"
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "management_from_agents" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "agent websockets"
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = var.management_port
  to_port                      = var.management_port
}

resource "aws_vpc_security_group_ingress_rule" "inference_from_clients" {
  for_each = toset(var.client_cidr_blocks)

  security_group_id = aws_security_group.control_plane.id
  description       = "OpenAI-compatible API"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.inference_port
  to_port           = var.inference_port
}

resource "aws_vpc_security_group_egress_rule" "control_plane_to_aws_apis" {
  security_group_id = aws_security_group.control_plane.id
  description       = "EC2 API calls (launch, terminate, describe agents)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "control_plane_to_database" {
  count = var.create_database ? 1 : 0

  security_group_id            = aws_security_group.control_plane.id
  description                  = "fleet state in PostgreSQL"
  referenced_security_group_id = aws_security_group.database[0].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.private_route_table_ids
}
