{#- A receivable_history value column (from_value / to_value) as text.
    The tap sends strings, integers, booleans or null; loaders store that as text (DuckDB:
    VARCHAR) or as JSON (PostgreSQL: jsonb, where ->> '{}'-style extraction is needed to get
    APPROVED rather than "APPROVED"). The column's type is looked up, so either works. -#}
{% macro history_value(relation, column_name) -%}
    {%- set data_type = 'text' -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name | lower == column_name -%}
                {%- set data_type = column.data_type | lower -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(adapter.dispatch('history_value', 'kapwork')(column_name, data_type)) }}
{%- endmacro %}

{% macro default__history_value(column_name, data_type) -%}
    {%- if 'json' in data_type -%}
        json_extract_string({{ column_name }}, '$')
    {%- else -%}
        cast({{ column_name }} as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}

{% macro postgres__history_value(column_name, data_type) -%}
    {%- if 'json' in data_type -%}
        ({{ column_name }}::jsonb #>> '{}')
    {%- else -%}
        cast({{ column_name }} as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}
