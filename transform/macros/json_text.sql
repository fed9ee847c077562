{#- A field of a JSON object column, as text (vendor.name, debtor.id, ...).
    Adapters store the objects differently: DuckDB as JSON, PostgreSQL as jsonb, Snowflake
    as VARIANT. -#}
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

{#- NB: the cast of the path (`col:field::varchar`) gives a string field's value; a VARIANT
    cast whole (`to_varchar(col:field)`) keeps the JSON quotes on fakesnow, not on Snowflake
    (tests/e2e/test_models_snowflake.py refuses quoted values). -#}
{% macro snowflake__json_text(column, field) -%}
    {{ column }}:{{ field }}::varchar
{%- endmacro %}
