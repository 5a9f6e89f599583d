/**
 * A Keycloak 26-shaped schema for the benchmark: the table names, column widths, key types and
 * indexes of Keycloak's own Liquibase changelog (simplified: fewer columns on the rarely used
 * tables), plus the extras a real installation carries and a benchmark must exercise: a custom
 * provider table with jsonb and bytea, a legacy `hibernate_sequence`, an identity column and
 * large objects (written by the generator).
 *
 * Tables are created without secondary indexes and foreign keys; those come after the data is
 * loaded ({@link KEYCLOAK_POST_LOAD_DDL}), which is how a restore builds them too and several
 * times faster than maintaining them row by row during generation.
 */

/** Tables, primary keys and sequences, before any data. */
export const KEYCLOAK_TABLES_DDL = `
CREATE TABLE realm (
  id varchar(36) PRIMARY KEY, access_code_lifespan integer, user_action_lifespan integer,
  access_token_lifespan integer, account_theme varchar(255), admin_theme varchar(255),
  email_theme varchar(255), enabled boolean NOT NULL DEFAULT false, events_enabled boolean NOT NULL DEFAULT false,
  events_expiration bigint, login_theme varchar(255), name varchar(255) UNIQUE, not_before integer,
  password_policy varchar(2550), registration_allowed boolean NOT NULL DEFAULT false,
  remember_me boolean NOT NULL DEFAULT false, reset_password_allowed boolean NOT NULL DEFAULT false,
  social boolean NOT NULL DEFAULT false, ssl_required varchar(255), sso_idle_timeout integer,
  sso_max_lifespan integer, update_profile_on_soc_login boolean NOT NULL DEFAULT false,
  verify_email boolean NOT NULL DEFAULT false, master_admin_client varchar(36), login_lifespan integer,
  internationalization_enabled boolean NOT NULL DEFAULT false, default_locale varchar(255),
  reg_email_as_username boolean NOT NULL DEFAULT false, admin_events_enabled boolean NOT NULL DEFAULT false,
  admin_events_details_enabled boolean NOT NULL DEFAULT false, edit_username_allowed boolean NOT NULL DEFAULT false,
  otp_policy_counter integer DEFAULT 0, otp_policy_window integer DEFAULT 1, otp_policy_period integer DEFAULT 30,
  otp_policy_digits integer DEFAULT 6, otp_policy_alg varchar(36) DEFAULT 'HmacSHA1',
  otp_policy_type varchar(36) DEFAULT 'totp', browser_flow varchar(36), registration_flow varchar(36),
  direct_grant_flow varchar(36), reset_credentials_flow varchar(36), client_auth_flow varchar(36),
  offline_session_idle_timeout integer DEFAULT 0, revoke_refresh_token boolean NOT NULL DEFAULT false,
  access_token_life_implicit integer DEFAULT 0, login_with_email_allowed boolean NOT NULL DEFAULT true,
  duplicate_emails_allowed boolean NOT NULL DEFAULT false, docker_auth_flow varchar(36),
  refresh_token_max_reuse integer DEFAULT 0, allow_user_managed_access boolean NOT NULL DEFAULT false,
  sso_max_lifespan_remember_me integer DEFAULT 0, sso_idle_timeout_remember_me integer DEFAULT 0,
  default_role varchar(255));
CREATE TABLE realm_attribute (name varchar(255), realm_id varchar(36), value text, PRIMARY KEY (name, realm_id));
CREATE TABLE realm_events_listeners (realm_id varchar(36), value varchar(255), PRIMARY KEY (realm_id, value));
CREATE TABLE realm_enabled_event_types (realm_id varchar(36), value varchar(255), PRIMARY KEY (realm_id, value));
CREATE TABLE realm_supported_locales (realm_id varchar(36), value varchar(255), PRIMARY KEY (realm_id, value));
CREATE TABLE realm_smtp_config (realm_id varchar(36), value varchar(255), name varchar(255), PRIMARY KEY (realm_id, name));
CREATE TABLE realm_localizations (realm_id varchar(255), locale varchar(255), texts text NOT NULL, PRIMARY KEY (realm_id, locale));
CREATE TABLE realm_required_credential (type varchar(255), form_label varchar(255), input boolean NOT NULL DEFAULT false,
  secret boolean NOT NULL DEFAULT false, realm_id varchar(36), PRIMARY KEY (realm_id, type));
CREATE TABLE realm_default_groups (realm_id varchar(36), group_id varchar(36), PRIMARY KEY (realm_id, group_id));

CREATE TABLE client (
  id varchar(36) PRIMARY KEY, enabled boolean NOT NULL DEFAULT false, full_scope_allowed boolean NOT NULL DEFAULT false,
  client_id varchar(255), not_before integer, public_client boolean NOT NULL DEFAULT false, secret varchar(255),
  base_url varchar(255), bearer_only boolean NOT NULL DEFAULT false, management_url varchar(255),
  surrogate_auth_required boolean NOT NULL DEFAULT false, realm_id varchar(36), protocol varchar(255),
  node_rereg_timeout integer DEFAULT 0, frontchannel_logout boolean NOT NULL DEFAULT false,
  consent_required boolean NOT NULL DEFAULT false, name varchar(255), service_accounts_enabled boolean NOT NULL DEFAULT false,
  client_authenticator_type varchar(255), root_url varchar(255), description varchar(255),
  registration_token varchar(255), standard_flow_enabled boolean NOT NULL DEFAULT true,
  implicit_flow_enabled boolean NOT NULL DEFAULT false, direct_access_grants_enabled boolean NOT NULL DEFAULT false,
  always_display_in_console boolean NOT NULL DEFAULT false, UNIQUE (realm_id, client_id));
CREATE TABLE client_attributes (client_id varchar(36), name varchar(255), value text, PRIMARY KEY (client_id, name));
CREATE TABLE redirect_uris (client_id varchar(36), value varchar(255), PRIMARY KEY (client_id, value));
CREATE TABLE web_origins (client_id varchar(36), value varchar(255), PRIMARY KEY (client_id, value));
CREATE TABLE client_node_registrations (client_id varchar(36), value integer, name varchar(255), PRIMARY KEY (client_id, name));
CREATE TABLE client_auth_flow_bindings (client_id varchar(36), flow_id varchar(36), binding_name varchar(255), PRIMARY KEY (client_id, binding_name));
CREATE TABLE client_initial_access (id varchar(36) PRIMARY KEY, realm_id varchar(36) NOT NULL, timestamp integer,
  expiration integer, count integer, remaining_count integer);
CREATE TABLE protocol_mapper (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL, protocol varchar(255) NOT NULL,
  protocol_mapper_name varchar(255) NOT NULL, client_id varchar(36), client_scope_id varchar(36));
CREATE TABLE protocol_mapper_config (protocol_mapper_id varchar(36), value text, name varchar(255), PRIMARY KEY (protocol_mapper_id, name));
CREATE TABLE client_scope (id varchar(36) PRIMARY KEY, name varchar(255), realm_id varchar(36), description varchar(255),
  protocol varchar(255), UNIQUE (realm_id, name));
CREATE TABLE client_scope_attributes (scope_id varchar(36), value varchar(2048), name varchar(255), PRIMARY KEY (scope_id, name));
CREATE TABLE client_scope_client (client_id varchar(255), scope_id varchar(255), default_scope boolean NOT NULL DEFAULT false,
  PRIMARY KEY (client_id, scope_id));
CREATE TABLE client_scope_role_mapping (scope_id varchar(36), role_id varchar(36), PRIMARY KEY (scope_id, role_id));
CREATE TABLE default_client_scope (realm_id varchar(36), scope_id varchar(36), default_scope boolean NOT NULL DEFAULT false,
  PRIMARY KEY (realm_id, scope_id));
CREATE TABLE scope_mapping (client_id varchar(36), role_id varchar(36), PRIMARY KEY (client_id, role_id));

CREATE TABLE keycloak_role (id varchar(36) PRIMARY KEY, client_realm_constraint varchar(255),
  client_role boolean NOT NULL DEFAULT false, description varchar(255), name varchar(255), realm_id varchar(255),
  client varchar(36), realm varchar(36), UNIQUE (name, client_realm_constraint));
CREATE TABLE composite_role (composite varchar(36), child_role varchar(36), PRIMARY KEY (composite, child_role));
CREATE TABLE role_attribute (id varchar(36) PRIMARY KEY, role_id varchar(36) NOT NULL, name varchar(255) NOT NULL, value varchar(255));
CREATE TABLE keycloak_group (id varchar(36) PRIMARY KEY, name varchar(255), parent_group varchar(36) NOT NULL,
  realm_id varchar(36), type integer NOT NULL DEFAULT 0);
CREATE TABLE group_attribute (id varchar(36) PRIMARY KEY DEFAULT 'sybase-needs-something-here', name varchar(255) NOT NULL,
  value varchar(255), group_id varchar(36) NOT NULL);
CREATE TABLE group_role_mapping (role_id varchar(36), group_id varchar(36), PRIMARY KEY (role_id, group_id));

CREATE TABLE user_entity (id varchar(36) PRIMARY KEY, email varchar(255), email_constraint varchar(255),
  email_verified boolean NOT NULL DEFAULT false, enabled boolean NOT NULL DEFAULT false, federation_link varchar(255),
  first_name varchar(255), last_name varchar(255), realm_id varchar(255), username varchar(255),
  created_timestamp bigint, service_account_client_link varchar(255), not_before integer NOT NULL DEFAULT 0,
  UNIQUE (realm_id, email_constraint), UNIQUE (realm_id, username));
CREATE TABLE credential (id varchar(36) PRIMARY KEY, salt bytea, type varchar(255), user_id varchar(36),
  created_date bigint, user_label varchar(255), secret_data text, credential_data text, priority integer,
  version integer DEFAULT 0);
CREATE TABLE user_attribute (name varchar(255) NOT NULL, value varchar(255), user_id varchar(36) NOT NULL,
  id varchar(36) PRIMARY KEY DEFAULT 'sybase-needs-something-here', long_value_hash bytea,
  long_value_hash_lower_case bytea, long_value text);
CREATE TABLE user_role_mapping (role_id varchar(255), user_id varchar(36), PRIMARY KEY (role_id, user_id));
CREATE TABLE user_group_membership (group_id varchar(36), user_id varchar(36), membership_type varchar(255) NOT NULL,
  PRIMARY KEY (group_id, user_id));
CREATE TABLE user_required_action (user_id varchar(36), required_action varchar(255) NOT NULL DEFAULT ' ',
  PRIMARY KEY (required_action, user_id));
CREATE TABLE federated_identity (identity_provider varchar(255), realm_id varchar(36), federated_user_id varchar(255),
  federated_username varchar(255), token text, user_id varchar(36), PRIMARY KEY (identity_provider, user_id));
CREATE TABLE user_consent (id varchar(36) PRIMARY KEY, client_id varchar(255), user_id varchar(36) NOT NULL,
  created_date bigint, last_updated_date bigint, client_storage_provider varchar(36), external_client_id varchar(255));
CREATE TABLE user_consent_client_scope (user_consent_id varchar(36), scope_id varchar(36), PRIMARY KEY (user_consent_id, scope_id));
CREATE TABLE user_federation_provider (id varchar(36) PRIMARY KEY, changed_sync_period integer, display_name varchar(255),
  full_sync_period integer, last_sync integer, priority integer, provider_name varchar(255), realm_id varchar(36));
CREATE TABLE user_federation_config (user_federation_provider_id varchar(36), value varchar(255), name varchar(255),
  PRIMARY KEY (user_federation_provider_id, name));
CREATE TABLE user_federation_mapper (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL,
  federation_provider_id varchar(36) NOT NULL, federation_mapper_type varchar(255) NOT NULL, realm_id varchar(36) NOT NULL);
CREATE TABLE user_federation_mapper_config (user_federation_mapper_id varchar(36), value varchar(255), name varchar(255),
  PRIMARY KEY (user_federation_mapper_id, name));
CREATE TABLE fed_user_attribute (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL, user_id varchar(255) NOT NULL,
  realm_id varchar(36) NOT NULL, storage_provider_id varchar(36), value varchar(2024), long_value_hash bytea,
  long_value_hash_lower_case bytea, long_value text);
CREATE TABLE fed_user_consent (id varchar(36) PRIMARY KEY, client_id varchar(255), user_id varchar(255) NOT NULL,
  realm_id varchar(36) NOT NULL, storage_provider_id varchar(36), created_date bigint, last_updated_date bigint,
  client_storage_provider varchar(36), external_client_id varchar(255));
CREATE TABLE fed_user_credential (id varchar(36) PRIMARY KEY, salt bytea, type varchar(255), created_date bigint,
  user_id varchar(255) NOT NULL, realm_id varchar(36) NOT NULL, storage_provider_id varchar(36), user_label varchar(255),
  secret_data text, credential_data text, priority integer);
CREATE TABLE fed_user_group_membership (group_id varchar(36), user_id varchar(255), realm_id varchar(36) NOT NULL,
  storage_provider_id varchar(36), PRIMARY KEY (group_id, user_id));
CREATE TABLE fed_user_required_action (required_action varchar(255) DEFAULT ' ', user_id varchar(255),
  realm_id varchar(36) NOT NULL, storage_provider_id varchar(36), PRIMARY KEY (required_action, user_id));
CREATE TABLE fed_user_role_mapping (role_id varchar(36), user_id varchar(255), realm_id varchar(36) NOT NULL,
  storage_provider_id varchar(36), PRIMARY KEY (role_id, user_id));
CREATE TABLE broker_link (identity_provider varchar(255), storage_provider_id varchar(255), realm_id varchar(36) NOT NULL,
  broker_user_id varchar(255), broker_username varchar(255), token text, user_id varchar(255),
  PRIMARY KEY (identity_provider, user_id));

CREATE TABLE identity_provider (internal_id varchar(36) PRIMARY KEY, enabled boolean NOT NULL DEFAULT false,
  provider_alias varchar(255), provider_id varchar(255), store_token boolean NOT NULL DEFAULT false,
  authenticate_by_default boolean NOT NULL DEFAULT false, realm_id varchar(36),
  add_token_role boolean NOT NULL DEFAULT true, trust_email boolean NOT NULL DEFAULT false,
  first_broker_login_flow_id varchar(36), post_broker_login_flow_id varchar(36), provider_display_name varchar(255),
  link_only boolean NOT NULL DEFAULT false, organization_id varchar(255), hide_on_login boolean DEFAULT false,
  UNIQUE (provider_alias, realm_id));
CREATE TABLE identity_provider_config (identity_provider_id varchar(36), value text, name varchar(255),
  PRIMARY KEY (identity_provider_id, name));
CREATE TABLE identity_provider_mapper (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL,
  idp_alias varchar(255) NOT NULL, idp_mapper_name varchar(255) NOT NULL, realm_id varchar(36) NOT NULL);
CREATE TABLE idp_mapper_config (idp_mapper_id varchar(36), value text, name varchar(255), PRIMARY KEY (idp_mapper_id, name));

CREATE TABLE authentication_flow (id varchar(36) PRIMARY KEY, alias varchar(255), description varchar(255),
  realm_id varchar(36), provider_id varchar(36) NOT NULL DEFAULT 'basic-flow', top_level boolean NOT NULL DEFAULT false,
  built_in boolean NOT NULL DEFAULT false);
CREATE TABLE authentication_execution (id varchar(36) PRIMARY KEY, alias varchar(255), authenticator varchar(36),
  realm_id varchar(36), flow_id varchar(36), requirement integer, priority integer,
  authenticator_flow boolean NOT NULL DEFAULT false, auth_flow_id varchar(36), auth_config varchar(36));
CREATE TABLE authenticator_config (id varchar(36) PRIMARY KEY, alias varchar(255), realm_id varchar(36));
CREATE TABLE authenticator_config_entry (authenticator_id varchar(36), value text, name varchar(255),
  PRIMARY KEY (authenticator_id, name));
CREATE TABLE required_action_provider (id varchar(36) PRIMARY KEY, alias varchar(255), name varchar(255),
  realm_id varchar(36), enabled boolean NOT NULL DEFAULT false, default_action boolean NOT NULL DEFAULT false,
  provider_id varchar(255), priority integer);
CREATE TABLE required_action_config (required_action_id varchar(36), value text, name varchar(255),
  PRIMARY KEY (required_action_id, name));
CREATE TABLE component (id varchar(36) PRIMARY KEY, name varchar(255), parent_id varchar(36), provider_id varchar(36),
  provider_type varchar(255), realm_id varchar(36), sub_type varchar(255));
CREATE TABLE component_config (id varchar(36) PRIMARY KEY, component_id varchar(36) NOT NULL, name varchar(255) NOT NULL,
  value text);

CREATE TABLE resource_server (id varchar(36) PRIMARY KEY, allow_rs_remote_mgmt boolean NOT NULL DEFAULT false,
  policy_enforce_mode smallint NOT NULL, decision_strategy smallint NOT NULL DEFAULT 1);
CREATE TABLE resource_server_resource (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL, type varchar(255),
  icon_uri varchar(255), owner varchar(255) NOT NULL, resource_server_id varchar(36),
  owner_managed_access boolean NOT NULL DEFAULT false, display_name varchar(255), UNIQUE (name, owner, resource_server_id));
CREATE TABLE resource_server_scope (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL, icon_uri varchar(255),
  resource_server_id varchar(36), display_name varchar(255), UNIQUE (name, resource_server_id));
CREATE TABLE resource_server_policy (id varchar(36) PRIMARY KEY, name varchar(255) NOT NULL, description varchar(255),
  type varchar(255) NOT NULL, decision_strategy smallint, logic smallint, resource_server_id varchar(36) NOT NULL,
  owner varchar(255), UNIQUE (name, resource_server_id));
CREATE TABLE policy_config (policy_id varchar(36), name varchar(255), value text, PRIMARY KEY (policy_id, name));
CREATE TABLE associated_policy (policy_id varchar(36), associated_policy_id varchar(36), PRIMARY KEY (policy_id, associated_policy_id));
CREATE TABLE resource_policy (resource_id varchar(36), policy_id varchar(36), PRIMARY KEY (resource_id, policy_id));
CREATE TABLE resource_scope (resource_id varchar(36), scope_id varchar(36), PRIMARY KEY (resource_id, scope_id));
CREATE TABLE resource_uris (resource_id varchar(36), value varchar(255), PRIMARY KEY (resource_id, value));
CREATE TABLE resource_attribute (id varchar(36) PRIMARY KEY DEFAULT 'sybase-needs-something-here', name varchar(255) NOT NULL,
  value varchar(255), resource_id varchar(36) NOT NULL);

CREATE TABLE event_entity (id varchar(36) PRIMARY KEY, client_id varchar(255), details_json varchar(2550),
  error varchar(255), ip_address varchar(255), realm_id varchar(255), session_id varchar(255), event_time bigint,
  type varchar(255), user_id varchar(255), details_json_long_value text);
CREATE TABLE admin_event_entity (id varchar(36) PRIMARY KEY, admin_event_time bigint, realm_id varchar(255),
  operation_type varchar(255), auth_realm_id varchar(255), auth_client_id varchar(255), auth_user_id varchar(255),
  ip_address varchar(255), resource_path varchar(2550), representation text, error varchar(255),
  resource_type varchar(64), details_json text);
CREATE TABLE offline_user_session (user_session_id varchar(36), user_id varchar(255) NOT NULL, realm_id varchar(36) NOT NULL,
  created_on integer NOT NULL, offline_flag varchar(4), data text, last_session_refresh integer NOT NULL DEFAULT 0,
  broker_session_id varchar(1024), version integer DEFAULT 0, remember_me boolean DEFAULT false,
  PRIMARY KEY (user_session_id, offline_flag));
CREATE TABLE offline_client_session (user_session_id varchar(36), client_id varchar(255), offline_flag varchar(4),
  timestamp integer, data text, client_storage_provider varchar(36) NOT NULL DEFAULT 'local',
  external_client_id varchar(255) NOT NULL DEFAULT 'local', version integer DEFAULT 0,
  PRIMARY KEY (user_session_id, client_id, client_storage_provider, external_client_id, offline_flag));
CREATE TABLE revoked_token (id varchar(255) PRIMARY KEY, expire bigint NOT NULL);

CREATE TABLE org (id varchar(255) PRIMARY KEY, enabled boolean NOT NULL, realm_id varchar(255) NOT NULL,
  group_id varchar(255) NOT NULL, name varchar(255) NOT NULL, description varchar(4000), alias varchar(255) NOT NULL,
  redirect_url varchar(2048), UNIQUE (realm_id, name), UNIQUE (realm_id, alias));
CREATE TABLE org_domain (id varchar(36), name varchar(255), verified boolean NOT NULL, org_id varchar(255) NOT NULL,
  PRIMARY KEY (id, name));
CREATE TABLE server_config (server_config_key varchar(255) PRIMARY KEY, value text NOT NULL, version integer DEFAULT 0);
CREATE TABLE jgroups_ping (address varchar(200) PRIMARY KEY, name varchar(200), cluster_name varchar(200) NOT NULL,
  ip varchar(200) NOT NULL, coord boolean);
CREATE TABLE migration_model (id varchar(36) PRIMARY KEY, version varchar(36), update_time bigint NOT NULL DEFAULT 0);
CREATE TABLE databasechangeloglock (id integer PRIMARY KEY, locked boolean NOT NULL, lockgranted timestamp, lockedby varchar(255));
CREATE TABLE databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL, filename varchar(255) NOT NULL,
  dateexecuted timestamp NOT NULL, orderexecuted integer NOT NULL, exectype varchar(10) NOT NULL, md5sum varchar(35),
  description varchar(255), comments varchar(255), tag varchar(255), liquibase varchar(20), contexts varchar(255),
  labels varchar(255), deployment_id varchar(10));

-- What a real installation adds next to Keycloak's own tables: a custom provider's audit table
-- (jsonb payload, bytea signature, identity key) and the sequence Keycloak < 12 created.
CREATE TABLE custom_audit_log (seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, id uuid NOT NULL,
  realm_id varchar(36) NOT NULL, user_id varchar(36), recorded_at timestamptz NOT NULL, payload jsonb NOT NULL,
  signature bytea NOT NULL);
CREATE SEQUENCE hibernate_sequence START 1 INCREMENT 1;
`;

/**
 * Secondary indexes and foreign keys, one statement each so that the generator can build them
 * on parallel connections. Names and columns are Keycloak's.
 */
export const KEYCLOAK_POST_LOAD_DDL: readonly string[] = [
  'CREATE INDEX idx_realm_master_adm_cli ON realm (master_admin_client)',
  'CREATE INDEX idx_client_id ON client (client_id)',
  'CREATE INDEX idx_client_att_by_name_value ON client_attributes (name, substr(value, 1, 255))',
  'CREATE INDEX idx_protocol_mapper_client ON protocol_mapper (client_id)',
  'CREATE INDEX idx_clscope_protmap ON protocol_mapper (client_scope_id)',
  'CREATE INDEX idx_realm_clscope ON client_scope (realm_id)',
  'CREATE INDEX idx_keycloak_role_client ON keycloak_role (client)',
  'CREATE INDEX idx_keycloak_role_realm ON keycloak_role (realm)',
  'CREATE INDEX idx_composite_child ON composite_role (child_role)',
  'CREATE INDEX idx_group_attr_group ON group_attribute (group_id)',
  'CREATE INDEX idx_group_role_mapp_group ON group_role_mapping (group_id)',
  'CREATE UNIQUE INDEX sibling_names ON keycloak_group (realm_id, parent_group, name)',
  'CREATE INDEX idx_user_email ON user_entity (email)',
  'CREATE INDEX idx_user_service_account ON user_entity (realm_id, service_account_client_link)',
  'CREATE INDEX idx_user_credential ON credential (user_id)',
  'CREATE INDEX idx_user_attribute ON user_attribute (user_id)',
  'CREATE INDEX idx_user_attribute_name ON user_attribute (name, value)',
  'CREATE INDEX user_attr_long_values ON user_attribute (long_value_hash, name)',
  'CREATE INDEX idx_user_role_mapping ON user_role_mapping (user_id)',
  'CREATE INDEX idx_user_group_mapping ON user_group_membership (user_id)',
  'CREATE INDEX idx_fedidentity_user ON federated_identity (user_id)',
  'CREATE INDEX idx_fedidentity_feduser ON federated_identity (federated_user_id)',
  'CREATE INDEX idx_user_consent ON user_consent (user_id)',
  'CREATE INDEX idx_event_time ON event_entity (realm_id, event_time)',
  'CREATE INDEX idx_event_entity_user_id_type ON event_entity (user_id, type, event_time)',
  'CREATE INDEX idx_admin_event_time ON admin_event_entity (realm_id, admin_event_time)',
  'CREATE INDEX idx_offline_uss_by_user ON offline_user_session (user_id, realm_id, offline_flag)',
  'CREATE INDEX idx_offline_uss_by_last_session_refresh ON offline_user_session (realm_id, offline_flag, last_session_refresh)',
  'CREATE INDEX idx_offline_uss_by_broker_session_id ON offline_user_session (broker_session_id, realm_id)',
  'CREATE INDEX idx_offline_css_by_client ON offline_client_session (client_id, offline_flag)',
  'CREATE INDEX idx_rev_token_on_expire ON revoked_token (expire)',
  'CREATE INDEX idx_component_realm ON component (realm_id)',
  'CREATE INDEX idx_component_config_comp ON component_config (component_id)',
  'CREATE INDEX idx_auth_exec_flow ON authentication_execution (flow_id)',
  'CREATE INDEX idx_auth_flow_realm ON authentication_flow (realm_id)',
  'CREATE INDEX idx_res_serv_pol_res_serv ON resource_server_policy (resource_server_id)',
  'CREATE INDEX idx_custom_audit_user ON custom_audit_log (user_id, recorded_at)',
  'CREATE INDEX idx_custom_audit_payload ON custom_audit_log USING gin (payload jsonb_path_ops)',
  'ALTER TABLE realm_attribute ADD CONSTRAINT fk_8shxd6l3e9atqukacxgpffptw FOREIGN KEY (realm_id) REFERENCES realm (id)',
  'ALTER TABLE client_attributes ADD CONSTRAINT fk3c47c64beacca966 FOREIGN KEY (client_id) REFERENCES client (id)',
  'ALTER TABLE redirect_uris ADD CONSTRAINT fk_1burs8pb4ouj97h5wuppahv9f FOREIGN KEY (client_id) REFERENCES client (id)',
  'ALTER TABLE web_origins ADD CONSTRAINT fk_lojpho213xcx4wnkog82ssrfy FOREIGN KEY (client_id) REFERENCES client (id)',
  'ALTER TABLE protocol_mapper ADD CONSTRAINT fk_pcm_realm FOREIGN KEY (client_id) REFERENCES client (id)',
  'ALTER TABLE protocol_mapper_config ADD CONSTRAINT fk_pmconfig FOREIGN KEY (protocol_mapper_id) REFERENCES protocol_mapper (id)',
  'ALTER TABLE client_scope_attributes ADD CONSTRAINT fk_cl_scope_attr_scope FOREIGN KEY (scope_id) REFERENCES client_scope (id)',
  'ALTER TABLE composite_role ADD CONSTRAINT fk_a63wvekftu8jo1pnj81e7mce2 FOREIGN KEY (composite) REFERENCES keycloak_role (id)',
  'ALTER TABLE composite_role ADD CONSTRAINT fk_gr7thllb9lu8q4vqa4524jjy8 FOREIGN KEY (child_role) REFERENCES keycloak_role (id)',
  'ALTER TABLE group_attribute ADD CONSTRAINT fk_group_attribute_group FOREIGN KEY (group_id) REFERENCES keycloak_group (id)',
  'ALTER TABLE group_role_mapping ADD CONSTRAINT fk_group_role_group FOREIGN KEY (group_id) REFERENCES keycloak_group (id)',
  'ALTER TABLE credential ADD CONSTRAINT fk_pfyr0glasqyl0dei3kl69r6v0 FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE user_attribute ADD CONSTRAINT fk_5hrm2vlf9ql5fu043kqepovbr FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE user_role_mapping ADD CONSTRAINT fk_c4fqv34p1mbylloxang7b1q3l FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE user_group_membership ADD CONSTRAINT fk_user_group_user FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE user_required_action ADD CONSTRAINT fk_6qj3w1jw9cvafhe19bwsiuvmd FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE federated_identity ADD CONSTRAINT fk404288b92ef007a6 FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE user_consent ADD CONSTRAINT fk_grntcsnt_user FOREIGN KEY (user_id) REFERENCES user_entity (id)',
  'ALTER TABLE identity_provider_config ADD CONSTRAINT fkdc4897cf864c4e43 FOREIGN KEY (identity_provider_id) REFERENCES identity_provider (internal_id)',
  'ALTER TABLE authentication_execution ADD CONSTRAINT fk_auth_exec_flow FOREIGN KEY (flow_id) REFERENCES authentication_flow (id)',
  'ALTER TABLE authentication_flow ADD CONSTRAINT fk_auth_flow_realm FOREIGN KEY (realm_id) REFERENCES realm (id)',
  'ALTER TABLE component ADD CONSTRAINT fk_component_realm FOREIGN KEY (realm_id) REFERENCES realm (id)',
  'ALTER TABLE component_config ADD CONSTRAINT fk_component_config FOREIGN KEY (component_id) REFERENCES component (id)',
  'ALTER TABLE policy_config ADD CONSTRAINT fkdc34197cf864c4e43 FOREIGN KEY (policy_id) REFERENCES resource_server_policy (id)',
  'ALTER TABLE resource_server_policy ADD CONSTRAINT fk_frsrpo213xcx4wnkog82ssrfy FOREIGN KEY (resource_server_id) REFERENCES resource_server (id)',
  'ALTER TABLE resource_server_resource ADD CONSTRAINT fk_frsrho213xcx4wnkog82ssrfy FOREIGN KEY (resource_server_id) REFERENCES resource_server (id)',
  'ALTER TABLE resource_server_scope ADD CONSTRAINT fk_frsrso213xcx4wnkog82ssrfy FOREIGN KEY (resource_server_id) REFERENCES resource_server (id)',
  'ALTER TABLE offline_client_session ADD CONSTRAINT fk_offline_css_uss FOREIGN KEY (user_session_id, offline_flag) REFERENCES offline_user_session (user_session_id, offline_flag)',
];
