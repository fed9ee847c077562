{#- A field of a JSON object column, as text (vendor.name, debtor.id, ...).
    Adapters store the objects differently: DuckDB as JSON, PostgreSQL as jsonb.
    Another warehouse needs one more `<adapter>__json_text` here, e.g. for Snowflake:
    {{ column }}:{{ field }}::varchar -#}
{% macro json_text(column, field) -%}
    {{ return(adapter.dispatch('json_text', 'kapwork')(column, field)) }}
{%- endmacro %}

{% macro default__json_text(column, field) -%}
    json_extract_string({{ column }}, '$.{{ field }}')
{%- endmacro %}

{% macro duckdb__json_text(column, field) -%}
    json_extract_string({{ column }}, '$.{{ field }}')
{%- endmacro %}

{% macro postgres__json_text(column, field) -%}
    ({{ column }}::jsonb ->> '{{ field }}')
{%- endmacro %}
